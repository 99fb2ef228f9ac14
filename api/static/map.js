// The district map view: units plotted by location, filled by their four-colour risk grade and
// ringed by their worst open alert, with a table by district.

import { api, fetchRaw } from "./api.js";
import { districtMap } from "./chart.js";
import { t } from "./i18n.js";
import { $, GRADES, gradeText, h, openPrintable, SEV_RANK, toast } from "./util.js";

// ---------- district map ----------

export async function renderMap() {
  const main = $("#view");
  const data = await api("/units");
  const mapBox = h("div", { class: "map-box", id: "map" });
  const districts = new Map();
  for (const u of data.items) {
    const d = districts.get(u.district) || { units: 0, alerts: 0, worst: null, red: 0, orange: 0 };
    d.units += 1;
    d.alerts += u.open_alerts;
    if (u.grade === "red") d.red += 1;
    if (u.grade === "orange") d.orange += 1;
    if (u.worst_severity && (d.worst === null || SEV_RANK[u.worst_severity] < SEV_RANK[d.worst])) d.worst = u.worst_severity;
    districts.set(u.district, d);
  }
  const unplaced = data.items.filter((u) => u.lat === null || u.lon === null);
  main.replaceChildren(
    h(
      "section",
      { class: "map-view" },
      h("div", { class: "map-main" }, h("h1", { text: t("nav_map") }), h("p", { class: "muted small", text: t("map_title") }), mapBox, legend()),
      h(
        "aside",
        { class: "map-side" },
        h(
          "table",
          { class: "grid", id: "district-table" },
          h("thead", {}, h("tr", {}, [t("district"), t("units"), t("grade_red"), t("grade_orange"), t("open_alerts"), t("worst")].map((x) => h("th", { text: x })))),
          h("tbody", {}, [...districts].map(([name, d]) => h("tr", {}, h("td", {}, name || "—", " ", sheetButton(name)), h("td", { text: d.units }), h("td", { class: d.red ? "bad" : "", text: d.red }), h("td", { text: d.orange }), h("td", { text: d.alerts }), h("td", {}, d.worst ? h("span", { class: `chip sev-${d.worst}`, text: t(`severity_${d.worst}`) }) : h("span", { class: "chip ok", text: t("ok") }))))),
        ),
        unplaced.length ? h("div", {}, h("h3", { text: t("no_location") }), h("ul", {}, unplaced.map((u) => h("li", {}, h("a", { href: `#/unit/${encodeURIComponent(u.id)}`, text: u.name }))))) : null,
      ),
    ),
  );
  districtMap(mapBox, data.items, { label: t("map_title"), gradeText });
}

function legend() {
  const grades = [...GRADES].reverse().map((g) => h("span", { class: "legend-item" }, h("span", { class: `swatch grade-${g}` }), t(`grade_${g}`)));
  const ring = h("span", { class: "legend-item" }, h("span", { class: "swatch ring" }), t("map_ring"));
  return h("div", { class: "legend" }, [...grades, h("span", { class: "legend-item" }, h("span", { class: "swatch grade-none" }), t("grade_none")), ring]);
}

// The district's sheet of QR codes (一店一码), to print.
function sheetButton(district) {
  const b = h("button", { class: "ghost small", title: t("qr_sheet"), "data-district": district, text: "▦" });
  b.onclick = () => openPrintable(fetchRaw, `/units/codes?district=${encodeURIComponent(district)}`).catch((err) => toast(err.message, "error"));
  return b;
}
