// The district map view (一张图): units on a real map (Leaflet, served from Debian's
// libjs-leaflet; no tiles unless the city configured its own tile server), filled by their
// four-colour risk grade, ringed by their worst open alert, live fire alarms pulsing; layers
// for open hazards, offline devices and the density of hazards found; a table by district.
// Without Leaflet on the server the units are drawn on a plain map.

import { api, fetchRaw } from "./api.js";
import { districtMap } from "./chart.js";
import { t } from "./i18n.js";
import { can, state } from "./state.js";
import { $, fireCountsByUnit, GRADES, gradeText, h, openPrintable, SEV_RANK, toast } from "./util.js";

let leaflet = null; // the module once loaded; false when it cannot be

async function loadLeaflet(config) {
  if (leaflet !== null) return leaflet;
  if (!config.library) return (leaflet = false);
  try {
    if (!document.querySelector("link[data-leaflet]")) {
      document.head.appendChild(h("link", { rel: "stylesheet", href: "/vendor/leaflet/leaflet.css", "data-leaflet": "" }));
    }
    leaflet = await import("/vendor/leaflet/leaflet.esm.js");
  } catch {
    leaflet = false;
  }
  return leaflet;
}

// A unit id as a class name (ids are letters, digits, "_", "." and "-").
const unitClass = (id) => `unit-${id.replace(/\./g, "_")}`;

function unitPopup(u) {
  return h(
    "div",
    { class: "unit-popup" },
    h("strong", { text: u.name }),
    h("div", { text: `${t("grade")}: ${u.grade ? t(`grade_${u.grade}`) : t("grade_none")}` }),
    h("div", { text: `${t("open_alerts")}: ${u.open_alerts}` }),
    can("units:read") ? h("a", { href: `#/unit/${encodeURIComponent(u.id)}`, text: t("open_unit") }) : null,
  );
}

async function drawLeaflet(L, box, units, config) {
  const placed = units.filter((u) => u.lat !== null && u.lon !== null);
  const map = L.map(box, { attributionControl: Boolean(config.tiles), zoomSnap: 0.5 });
  if (config.tiles) L.tileLayer(config.tiles.url, { attribution: config.tiles.attribution, maxZoom: config.tiles.max_zoom }).addTo(map);
  const fires = fireCountsByUnit(state.alerts.values());
  const layer = L.layerGroup();
  for (const u of placed) {
    const cls = ["unit-marker", `grade-${u.grade || "none"}`, u.worst_severity ? `sev-${u.worst_severity}` : "sev-none", unitClass(u.id), fires.get(u.id) ? "fire" : ""];
    L.circleMarker([u.lat, u.lon], { radius: 9, weight: 3, className: cls.filter(Boolean).join(" ") })
      .bindTooltip(u.name, { permanent: true, direction: "right", className: "unit-label" })
      .bindPopup(unitPopup(u))
      .addTo(layer);
  }
  layer.addTo(map);
  const offline = L.layerGroup();
  for (const u of placed.filter((x) => x.offline > 0)) {
    L.circleMarker([u.lat, u.lon], { radius: 16, weight: 2, fill: false, dashArray: "4 3", className: `offline-ring ${unitClass(u.id)}` })
      .bindTooltip(t("layer_offline_n", { n: u.offline }))
      .addTo(offline);
  }
  offline.addTo(map);
  const overlays = { [t("layer_units")]: layer, [t("layer_offline")]: offline };
  if (can("hazards:read")) {
    const byId = new Map(placed.map((u) => [u.id, u]));
    const [open, counts] = await Promise.all([api("/hazards?state=found,notified,rectifying,submitted,reviewed&limit=1000"), api("/hazards/counts?group=unit")]);
    const hazards = L.layerGroup();
    const perUnit = new Map();
    for (const hz of open.items) perUnit.set(hz.unit_id, [...(perUnit.get(hz.unit_id) || []), hz]);
    for (const [id, list] of perUnit) {
      const u = byId.get(id);
      if (!u) continue;
      const overdue = list.some((hz) => hz.overdue_at);
      L.circleMarker([u.lat, u.lon], { radius: 12, weight: 2, fill: false, className: `hazard-ring${overdue ? " overdue" : ""} ${unitClass(id)}` })
        .bindTooltip(t("layer_hazards_n", { n: list.length }))
        .addTo(hazards);
    }
    hazards.addTo(map);
    // Density: a translucent disc per unit, its area as the hazards found there.
    const density = L.layerGroup();
    for (const c of counts.rows) {
      const u = byId.get(c.key);
      if (u && c.found) L.circle([u.lat, u.lon], { radius: 120 * Math.sqrt(c.found), stroke: false, className: `density ${unitClass(c.key)}` }).addTo(density);
    }
    overlays[t("layer_hazards")] = hazards;
    overlays[t("layer_density")] = density;
  }
  L.control.layers(null, overlays, { collapsed: false }).addTo(map);
  if (placed.length) map.fitBounds(L.latLngBounds(placed.map((u) => [u.lat, u.lon])), { padding: [40, 40], maxZoom: 15 });
  else map.setView([35, 105], 4);
  return map;
}

// ---------- district map ----------

export async function renderMap() {
  const main = $("#view");
  const [data, config] = await Promise.all([api("/units"), api("/map")]);
  const L = await loadLeaflet(config);
  const mapBox = h("div", { class: L ? "map-box leaflet-map" : "map-box", id: "map" });
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
  if (L) await drawLeaflet(L, mapBox, data.items, config);
  else districtMap(mapBox, data.items, { label: t("map_title"), gradeText });
}

function legend() {
  const grades = [...GRADES].reverse().map((g) => h("span", { class: "legend-item" }, h("span", { class: `swatch grade-${g}` }), t(`grade_${g}`)));
  const ring = h("span", { class: "legend-item" }, h("span", { class: "swatch ring" }), t("map_ring"));
  return h("div", { class: "legend" }, [...grades, h("span", { class: "legend-item" }, h("span", { class: "swatch grade-none" }), t("grade_none")), ring]);
}

// The district's sheet of QR codes (一店一码), to print.
function sheetButton(district) {
  const q = `?district=${encodeURIComponent(district)}`;
  const b = h("button", { class: "ghost small", title: t("qr_sheet"), "data-district": district, text: "▦" });
  b.onclick = () => openPrintable(fetchRaw, `/units/codes${q}`).catch((err) => toast(err.message, "error"));
  // The same as PDF (12 codes an A4 page) and the district's 告知牌, one an A5 page: what a
  // print shop takes as it is.
  const pdf = h("button", { class: "ghost small sheet-pdf", title: t("qr_sheet_pdf"), "data-district": district, text: "PDF" });
  pdf.onclick = () => openPrintable(fetchRaw, `/units/codes.pdf${q}`).catch((err) => toast(err.message, "error"));
  const notices = h("button", { class: "ghost small notices-pdf", title: t("notices_pdf"), "data-district": district, text: "告知牌" });
  notices.onclick = () => openPrintable(fetchRaw, `/units/notices.pdf${q}`).catch((err) => toast(err.message, "error"));
  return h("span", { class: "sheet-buttons" }, b, pdf, notices);
}
