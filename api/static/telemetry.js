// The telemetry explorer: a device's or a unit's readings of one metric over a range, as a
// chart, and the same as a CSV download.

import { api, fetchRaw } from "./api.js";
import { lineChart } from "./chart.js";
import { bucketLabel, metricName, t } from "./i18n.js";
import { can, state } from "./state.js";
import { $, h, toast } from "./util.js";

// ---------- telemetry explorer ----------

const METRICS = ["residual_current_ma", "temp_c_1", "temp_c_2", "temp_c_3", "temp_c_4", "voltage_v_a", "voltage_v_b", "voltage_v_c", "current_a_a", "current_a_b", "current_a_c", "level_m", "pressure_mpa", "battery_pct", "rssi_dbm"];
const RANGES = [
  { hours: 1, bucket: "1m" },
  { hours: 6, bucket: "1m" },
  { hours: 24, bucket: "1m" },
  { hours: 24 * 7, bucket: "1h" },
  { hours: 24 * 30, bucket: "1d" },
];

function telemetryQuery(f) {
  const to = new Date();
  const from = new Date(to.getTime() - f.hours * 3600e3);
  const key = /^unit:/.test(f.source) ? "unit" : "device";
  const id = f.source.replace(/^(unit|device):/, "");
  return { key, id, from, to };
}

export function renderTelemetry() {
  const main = $("#view");
  const f = state.telemetryForm || { source: "", metric: "residual_current_ma", hours: 24, bucket: "1m" };
  state.telemetryForm = f;
  const chart = h("div", { class: "chart-box large", id: "telemetry-chart" });
  const source = h("input", { id: "tm-source", required: true, value: f.source, placeholder: "u1-em  /  unit:u1", "aria-label": t("device_or_unit") });
  const metric = h("select", { id: "tm-metric" }, METRICS.map((m) => h("option", { value: m, selected: m === f.metric, text: `${metricName(m)} (${m})` })));
  const range = h("select", { id: "tm-range" }, RANGES.map((r) => h("option", { value: r.hours, selected: r.hours === f.hours, text: r.hours < 48 ? t("last_hours", { n: r.hours }) : t("last_days", { n: r.hours / 24 }) })));
  const bucket = h("select", { id: "tm-bucket" }, ["raw", "1m", "1h", "1d"].map((b) => h("option", { value: b, selected: b === f.bucket, text: bucketLabel(b) })));
  const read = () => Object.assign(f, { source: source.value.trim(), metric: metric.value, hours: Number(range.value), bucket: bucket.value });
  const show = async () => {
    read();
    const q = telemetryQuery(f);
    try {
      const data = await api(`/telemetry?${q.key}=${encodeURIComponent(q.id)}&metric=${f.metric}&bucket=${f.bucket}&from=${q.from.toISOString()}&to=${q.to.toISOString()}`);
      if (!data.series.some((s) => s.points.length)) chart.replaceChildren(h("p", { class: "muted", text: t("no_data") }));
      else lineChart(chart, data.series, { from: data.from, to: data.to, width: 960, height: 320, label: `${q.id} ${metricName(f.metric)}` });
    } catch (err) {
      chart.replaceChildren(h("p", { class: "error", text: err.message }));
    }
  };
  const download = async () => {
    read();
    const q = telemetryQuery(f);
    const res = await fetchRaw(`/telemetry.csv?${q.key}=${encodeURIComponent(q.id)}&metric=${f.metric}&from=${q.from.toISOString()}&to=${q.to.toISOString()}`);
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      toast(data.message || res.statusText, "error");
      return;
    }
    const url = URL.createObjectURL(await res.blob());
    const a = h("a", { href: url, download: `telemetry-${q.id}-${f.metric}.csv` });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  };
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("h1", { text: t("nav_telemetry") }),
      h(
        "form",
        {
          class: "toolbar wrap",
          onsubmit: (e) => {
            e.preventDefault();
            show();
          },
        },
        h("label", { class: "field" }, h("span", { text: t("device_or_unit") }), source),
        h("label", { class: "field" }, h("span", { text: t("metric") }), metric),
        h("label", { class: "field" }, h("span", { text: t("range") }), range),
        h("label", { class: "field" }, h("span", { text: t("bucket") }), bucket),
        h("button", { type: "submit", class: "primary", text: t("show") }),
        can("telemetry:export") ? h("button", { type: "button", id: "csv", text: t("download_csv"), onclick: download }) : null,
      ),
      chart,
    ),
  );
  if (f.source) show();
}
