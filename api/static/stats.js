// The statistics view: alerts, acknowledgement times, and verified fire alarms (confirmed
// fires and false alarms counted apart) by unit or district; and the daily and monthly XLSX
// reports to download.

import { api, fetchRaw } from "./api.js";
import { t } from "./i18n.js";
import { state } from "./state.js";
import { $, h, toast } from "./util.js";

// Without a date the server reports its own today (in its timezone, not the browser's).
async function download(period, date) {
  const res = await fetchRaw(`/reports/${period}.xlsx${date ? `?date=${encodeURIComponent(date)}` : ""}`);
  if (!res.ok) {
    const data = await res.json().catch(() => ({}));
    toast(data.message || res.statusText, "error");
    return;
  }
  const url = URL.createObjectURL(await res.blob());
  const a = h("a", { href: url, download: `firesentry-${period}${date ? `-${period === "daily" ? date : date.slice(0, 7)}` : ""}.xlsx` });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function reportTools() {
  const date = h("input", { type: "date", id: "report-date", title: t("report_today") });
  return h(
    "div",
    { class: "toolbar wrap reports" },
    h("label", { class: "field" }, h("span", { text: t("report_date") }), date),
    h("button", { type: "button", class: "act", id: "report-daily", text: t("report_daily"), onclick: () => download("daily", date.value) }),
    h("button", { type: "button", class: "act", id: "report-monthly", text: t("report_monthly"), onclick: () => download("monthly", date.value) }),
  );
}

// ---------- statistics ----------

export async function renderStats() {
  const main = $("#view");
  const f = state.statsForm;
  const to = new Date();
  const from = new Date(to.getTime() - f.days * 86400e3);
  const data = await api(`/stats/alerts?group=${f.group}&from=${from.toISOString()}&to=${to.toISOString()}`);
  const group = h("select", { id: "st-group", onchange: (e) => { f.group = e.target.value; renderStats(); } }, ["unit", "district"].map((g) => h("option", { value: g, selected: g === f.group, text: t(g) })));
  const days = h("select", { id: "st-days", onchange: (e) => { f.days = Number(e.target.value); renderStats(); } }, [7, 30, 90, 365].map((n) => h("option", { value: n, selected: n === f.days, text: t("last_days", { n }) })));
  const mtta = (s) => (s === null ? "–" : s < 120 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`);
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("div", { class: "toolbar wrap" }, h("h1", { text: t("stats_title") }), h("label", { class: "field" }, h("span", { text: t("group_by") }), group), h("label", { class: "field" }, h("span", { text: t("range") }), days)),
      reportTools(),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "grid", id: "stats-table" },
          h("thead", {}, h("tr", {}, [f.group === "unit" ? t("unit") : t("district"), t("alerts"), t("critical"), t("acknowledged"), t("mtta"), t("verified"), t("confirmed_fires"), t("false_alarms"), t("false_alarm_rate")].map((x) => h("th", { text: x })))),
          h("tbody", {}, data.rows.map((r) => h("tr", { "data-key": r.key }, h("td", { text: r.name }), h("td", { text: r.alerts }), h("td", { text: r.critical }), h("td", { text: r.acknowledged }), h("td", { text: mtta(r.mean_time_to_ack_s) }), h("td", { class: "verified", text: r.fire_alarms_verified }), h("td", { class: "confirmed", text: r.confirmed_fires }), h("td", { class: "false-alarms", text: r.false_alarms }), h("td", { text: r.false_alarm_rate === null ? "–" : `${(r.false_alarm_rate * 100).toFixed(0)} %` })))),
        ),
      ),
    ),
  );
}
