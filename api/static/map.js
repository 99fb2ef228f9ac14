// The district map view: units plotted by location and coloured by their worst open alert,
// with a table by district.

import { api } from "./api.js";
import { districtMap } from "./chart.js";
import { t } from "./i18n.js";
import { $, h, SEV_RANK, SEVERITIES } from "./util.js";

// ---------- district map ----------

export async function renderMap() {
  const main = $("#view");
  const data = await api("/units");
  const mapBox = h("div", { class: "map-box", id: "map" });
  const districts = new Map();
  for (const u of data.items) {
    const d = districts.get(u.district) || { units: 0, alerts: 0, worst: null };
    d.units += 1;
    d.alerts += u.open_alerts;
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
          h("thead", {}, h("tr", {}, [t("district"), t("units"), t("open_alerts"), t("worst")].map((x) => h("th", { text: x })))),
          h("tbody", {}, [...districts].map(([name, d]) => h("tr", {}, h("td", { text: name || "—" }), h("td", { text: d.units }), h("td", { text: d.alerts }), h("td", {}, d.worst ? h("span", { class: `chip sev-${d.worst}`, text: t(`severity_${d.worst}`) }) : h("span", { class: "chip ok", text: t("ok") }))))),
        ),
        unplaced.length ? h("div", {}, h("h3", { text: t("no_location") }), h("ul", {}, unplaced.map((u) => h("li", {}, h("a", { href: `#/unit/${encodeURIComponent(u.id)}`, text: u.name }))))) : null,
      ),
    ),
  );
  districtMap(mapBox, data.items, { label: t("map_title") });
}

function legend() {
  return h("div", { class: "legend" }, [...SEVERITIES, "none"].map((s) => h("span", { class: "legend-item" }, h("span", { class: `swatch sev-${s}` }), s === "none" ? t("ok") : t(`severity_${s}`))));
}
