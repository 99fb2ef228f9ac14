// The units list, a unit's page (its open alerts and a chart of each device's recent readings
// with the rules' thresholds) and the offline devices.

import { api, fetchRaw } from "./api.js";
import { alertItem, contactList } from "./board.js";
import { lineChart } from "./chart.js";
import { actorName, bucketLabel, getLang, metricName, t } from "./i18n.js";
import { unitHazards } from "./hazards.js";
import { unitInspections } from "./inspections.js";
import { can, state } from "./state.js";
import { $, absTime, gradeChip, gradeReasons, h, openPrintable, sortAlerts, timeEl, toast } from "./util.js";

const PREFERRED_METRICS = ["residual_current_ma", "level_m", "pressure_mpa", "temp_c_1", "voltage_v_a", "battery_pct"];

// ---------- units ----------

function statusDot(status) {
  return h("span", { class: `dot ${status}`, title: t(status), "aria-label": t(status) });
}

export async function renderUnits() {
  const main = $("#view");
  const data = await api("/units");
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("h1", { text: t("units") }),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "grid", id: "units-table" },
          h("thead", {}, h("tr", {}, [t("unit"), t("district"), t("grade"), t("devices"), t("online"), t("offline"), t("unknown"), t("open_alerts"), t("worst")].map((x) => h("th", { text: x })))),
          h(
            "tbody",
            {},
            data.items.map((u) =>
              h(
                "tr",
                { "data-unit": u.id, class: "clickable", onclick: () => (location.hash = `#/unit/${encodeURIComponent(u.id)}`) },
                h("td", {}, h("a", { href: `#/unit/${encodeURIComponent(u.id)}`, text: u.name }), h("div", { class: "muted small", text: u.id })),
                h("td", { text: u.district }),
                h("td", {}, gradeChip(u)),
                h("td", { text: u.devices }),
                h("td", { text: u.online }),
                h("td", { class: u.offline ? "bad" : "", text: u.offline }),
                h("td", { text: u.unknown }),
                h("td", { text: u.open_alerts }),
                h("td", {}, u.worst_severity ? h("span", { class: `chip sev-${u.worst_severity}`, text: t(`severity_${u.worst_severity}`) }) : h("span", { class: "chip ok", text: t("ok") })),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

export async function renderUnit(unitId, code = null) {
  const main = $("#view");
  let d;
  try {
    d = await api(`/units/${encodeURIComponent(unitId)}`);
  } catch (err) {
    main.replaceChildren(h("p", { class: "error", text: err.message }));
    return;
  }
  const u = d.unit;
  const alerts = sortAlerts(d.open_alerts);
  for (const a of alerts) state.alerts.set(a.id, a);
  const cards = d.devices.map((dev) => deviceCard(dev, d.thresholds[dev.id] || {}));
  const eventsBox = h("div", { id: "unit-events" }, h("p", { class: "muted", text: "…" }));
  loadEvents(eventsBox, unitId);
  const gradeBox = h("div", { id: "unit-grade" }, h("p", { class: "muted", text: "…" }));
  loadGrades(gradeBox, unitId);
  main.replaceChildren(
    h(
      "section",
      { class: "unit-view" },
      h(
        "div",
        { class: "unit-head" },
        h("a", { href: "#/units", class: "back", text: `← ${t("back")}` }),
        h("h1", { text: u.name }),
        h("span", { class: "muted", text: [u.id, u.district, u.address].filter(Boolean).join(" · ") }),
        u.worst_severity ? h("span", { class: `chip sev-${u.worst_severity}`, text: t(`severity_${u.worst_severity}`) }) : h("span", { class: "chip ok", text: t("ok") }),
        gradeChip(u),
      ),
      h(
        "div",
        { class: "unit-body" },
        h(
          "div",
          { class: "unit-alerts" },
          h("h2", { text: `${t("open_alerts")} (${alerts.length})` }),
          h("ul", { class: "alerts", id: "unit-alerts" }, alerts.length ? alerts.map(alertItem) : h("li", { class: "empty", text: t("no_alerts") })),
          h("h2", { class: "section", text: t("grade") }),
          gradeBox,
          can("hazards:read") ? h("h2", { class: "section", text: t("open_hazards") }) : null,
          can("hazards:read") ? unitHazards(unitId) : null,
          can("hazards:read") ? h("h2", { class: "section", id: "inspections-head", text: t("inspections") }) : null,
          can("hazards:read") ? unitInspections(unitId, code) : null,
          h("h2", { class: "section", text: t("contacts") }),
          contactList(d.contacts || []),
          h("h2", { class: "section", text: t("unit_events") }),
          eventsBox,
        ), h("div", { class: "unit-devices" }, h("h2", { text: t("devices") }), h("p", { class: "muted small", text: t("recent_telemetry") }), h("div", { class: "device-grid" }, cards))),
    ),
  );
}

// The unit's device events of the last 7 days (a UTD's supervisory, shield, start, feedback …),
// in words, with the panel's loop, point and text.
async function loadEvents(box, unitId) {
  let data;
  try {
    data = await api(`/units/${encodeURIComponent(unitId)}/events?limit=200`);
  } catch (err) {
    box.replaceChildren(h("p", { class: "error", role: "alert", text: t("view_failed", { message: err.message }) }));
    return;
  }
  if (!data.items.length) {
    box.replaceChildren(h("p", { class: "muted", text: t("no_events") }));
    return;
  }
  box.replaceChildren(
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "grid small", id: "events-table" },
        h("thead", {}, h("tr", {}, [t("time"), t("event"), t("detector"), t("panel_text"), t("device")].map((x) => h("th", { text: x })))),
        h(
          "tbody",
          {},
          data.items.map((e) =>
            h(
              "tr",
              { "data-kind": e.kind, class: `event-${e.kind}` },
              h("td", { title: absTime(e.ts) }, timeEl(e.ts)),
              h("td", {}, h("span", { class: `event-kind kind-${e.kind}`, text: t(`event_${e.kind}`) })),
              h("td", { text: e.loop !== null && e.point !== null ? t("loop_point", { loop: e.loop, point: e.point }) : "" }),
              h("td", { text: e.text }),
              h("td", { text: [e.device_id, e.device_location].filter(Boolean).join(" · ") }),
            ),
          ),
        ),
      ),
    ),
  );
}

function deviceCard(dev, thresholds) {
  const chartBox = h("div", { class: "chart-box", "data-device": dev.id });
  const withLevels = dev.metrics.filter((m) => thresholds[m]);
  const metrics = [...new Set([...PREFERRED_METRICS.filter((m) => dev.metrics.includes(m)), ...withLevels, ...dev.metrics])];
  const chips = h("div", { class: "metric-chips" });
  const show = async (metric, fallbacks = []) => {
    for (const c of chips.children) c.classList.toggle("active", c.dataset.metric === metric);
    const drawn = await drawDeviceChart(chartBox, dev, metric, thresholds[metric] || []);
    // On first show, move on to a metric that has readings (a panel reports only rssi_dbm).
    if (!drawn && fallbacks.length) show(fallbacks[0], fallbacks.slice(1));
  };
  for (const m of metrics) chips.appendChild(h("button", { type: "button", class: "chip-btn", "data-metric": m, title: m, text: metricName(m), onclick: () => show(m) }));
  const card = h(
    "article",
    { class: `device-card ${dev.status}`, "data-device": dev.id },
    h("header", {}, statusDot(dev.status), h("strong", { text: dev.id }), h("span", { class: "muted", text: t(`type_${dev.type}`) })),
    h("div", { class: "muted small" }, `${t("status")}: ${t(dev.status)} · ${t("last_seen")}: `, timeEl(dev.last_seen)),
    metrics.length && can("telemetry:read") ? chips : null,
    can("telemetry:read") ? chartBox : null,
  );
  // A token without telemetry:read (a grid worker's) sees the devices, not their readings.
  if (!can("telemetry:read")) return card;
  if (metrics.length) show(metrics[0], metrics.slice(1, 4));
  else chartBox.replaceChildren(h("p", { class: "muted", text: t("no_metrics") }));
  return card;
}

async function fetchSeries(dev, metric, minutes, bucket) {
  const to = new Date();
  const from = new Date(to.getTime() - minutes * 60e3);
  return api(`/telemetry?device=${encodeURIComponent(dev.id)}&metric=${metric}&bucket=${bucket}&from=${from.toISOString()}&to=${to.toISOString()}`);
}

// The last hour per minute; when that holds only a few points (a device just started), the
// last 15 minutes of raw readings, from the first one on.
async function drawDeviceChart(box, dev, metric, thresholds) {
  try {
    let data = await fetchSeries(dev, metric, 60, "1m");
    let pts = data.series.flatMap((s) => s.points);
    let from = data.from;
    if (pts.length && pts.length < 10) {
      data = await fetchSeries(dev, metric, 15, "raw");
      pts = data.series.flatMap((s) => s.points);
      if (pts.length) from = new Date(Date.parse(pts[0].t) - 10e3).toISOString();
    }
    if (!pts.length) {
      box.replaceChildren(h("p", { class: "muted no-data", text: `${metricName(metric)}: ${t("no_data")}` }));
      return false;
    }
    lineChart(box, data.series, { thresholds, from, to: data.to, label: `${dev.id} ${metricName(metric)} (${data.unit})` });
    box.appendChild(h("div", { class: "chart-caption", text: `${metricName(metric)} (${data.unit}) · ${bucketLabel(data.bucket)}` }));
    return true;
  } catch (err) {
    box.replaceChildren(h("p", { class: "error", text: err.message }));
    return true;
  }
}

// ---------- offline devices ----------

export async function renderOffline() {
  const main = $("#view");
  const lists = await Promise.all([api("/devices?status=offline"), state.showUnknown ? api("/devices?status=unknown") : Promise.resolve({ items: [] })]);
  const devices = lists.flatMap((l) => l.items);
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("div", { class: "toolbar" }, h("h1", { text: `${t("offline_devices")} (${devices.length})` }), h("label", { class: "check" }, h("input", { type: "checkbox", id: "show-unknown", checked: state.showUnknown, onchange: (e) => { state.showUnknown = e.target.checked; renderOffline(); } }), h("span", { text: t("show_unknown") }))),
      devices.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "grid", id: "offline-table" },
              h("thead", {}, h("tr", {}, [t("device"), t("unit"), t("type"), t("status"), t("last_seen")].map((x) => h("th", { text: x })))),
              h("tbody", {}, devices.map((d) => h("tr", { "data-device": d.id }, h("td", { text: d.id }), h("td", {}, h("a", { href: `#/unit/${encodeURIComponent(d.unit_id)}`, text: d.unit_name })), h("td", { text: t(`type_${d.type}`) }), h("td", {}, statusDot(d.status), " ", t(d.status)), h("td", {}, timeEl(d.last_seen))))),
            ),
          )
        : h("p", { class: "empty", text: t("no_offline") }),
    ),
  );
}

// ---------- risk grade ----------

function gradePanel(box, unitId, g) {
  const now = h("button", { class: "ghost", id: "grade-now", text: t("grade_now") });
  now.onclick = async () => {
    now.disabled = true;
    try {
      gradePanel(box, unitId, await api(`/units/${encodeURIComponent(unitId)}/grade`, { method: "POST", body: {} }));
    } catch (err) {
      toast(err.message, "error");
      now.disabled = false;
    }
  };
  const notice = h("button", { class: "ghost", id: "grade-notice", text: t("grade_notice") });
  notice.onclick = () => openPrintable(fetchRaw, `/units/${encodeURIComponent(unitId)}/notice`).catch((err) => toast(err.message, "error"));
  const noticePdf = h("button", { class: "ghost", id: "grade-notice-pdf", text: "PDF", title: t("grade_notice_pdf") });
  noticePdf.onclick = () => openPrintable(fetchRaw, `/units/${encodeURIComponent(unitId)}/notice.pdf`).catch((err) => toast(err.message, "error"));
  const unit = { grade: g.grade, grade_reasons: g.reasons };
  const head = h(
    "p",
    { class: "grade-head" },
    gradeChip(unit),
    g.grade ? h("span", { class: "muted small", text: ` ${t("grade_score", { score: g.score })} · ${t("grade_since", { when: absTime(g.since) })} ` }) : null,
    now,
    notice,
    noticePdf,
  );
  const reasons = g.reasons.length ? h("ul", { class: "grade-reasons" }, g.reasons.map((r) => h("li", { text: getLang() === "zh-CN" ? r["zh-CN"] : r.en }))) : h("p", { class: "muted small", text: t("grade_no_reason") });
  const changes = g.changes.slice(0, 10).map((c) =>
    h(
      "li",
      {},
      timeEl(c.at),
      " ",
      c.from ? gradeChip({ grade: c.from, grade_reasons: [] }) : null,
      " → ",
      gradeChip({ grade: c.to, grade_reasons: c.reasons }),
      h("span", { class: "muted small", text: ` ${gradeReasons(c.reasons)} · ${c.trigger === "schedule" ? t("grade_trigger_schedule") : actorName(c.trigger.replace(/^request:/, ""))}` }),
    ),
  );
  box.replaceChildren(head, reasons, changes.length ? h("h3", { text: t("grade_changes") }) : null, changes.length ? h("ul", { class: "grade-changes" }, changes) : null);
}

async function loadGrades(box, unitId) {
  try {
    gradePanel(box, unitId, await api(`/units/${encodeURIComponent(unitId)}/grades`));
  } catch (err) {
    box.replaceChildren(h("p", { class: "error", text: err.message }));
  }
}
