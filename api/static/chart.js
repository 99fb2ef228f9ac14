// Small SVG drawings: a time-series chart with threshold lines, and the district map.
// Only presentation attributes and classes are used (the page's CSP forbids inline styles).

const NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

function text(parent, x, y, content, cls, anchor = "start") {
  const el = svg("text", { x, y, class: cls, "text-anchor": anchor }, parent);
  el.textContent = content;
  return el;
}

// About `count` round tick values covering [lo, hi].
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const first = Math.floor(lo / step) * step;
  const ticks = [];
  for (let v = first; v <= hi + step * 0.5; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function fmtNumber(v) {
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1).replace(/\.0$/, "");
  return v.toFixed(2).replace(/0$/, "").replace(/\.0$/, "");
}

function fmtTime(d, spanMs) {
  const pad = (n) => String(n).padStart(2, "0");
  if (spanMs > 2 * 86400e3) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (spanMs < 15 * 60e3) return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// Draw series [{device_id, points:[{t,min,max,avg,last}]}] with threshold lines
// [{value, kind, severity, rule_id}] into `host`; returns the <svg>.
export function lineChart(host, series, opts = {}) {
  const width = opts.width || 640;
  const height = opts.height || 220;
  const m = { top: 14, right: 16, bottom: 26, left: 48 };
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": opts.label || "chart",
    preserveAspectRatio: "none",
  });
  host.replaceChildren(root);
  const pts = series.flatMap((s) => s.points);
  const thresholds = opts.thresholds || [];
  const start = opts.from ? new Date(opts.from).getTime() : Math.min(...pts.map((p) => Date.parse(p.t)));
  const end = opts.to ? new Date(opts.to).getTime() : Math.max(...pts.map((p) => Date.parse(p.t)));
  let lo = Math.min(...pts.map((p) => p.min), ...thresholds.map((x) => x.value));
  let hi = Math.max(...pts.map((p) => p.max), ...thresholds.map((x) => x.value));
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 0;
    hi = 1;
  }
  const ticks = niceTicks(lo, hi, 4);
  lo = Math.min(lo, ticks[0]);
  hi = Math.max(hi, ticks[ticks.length - 1]);
  const x = (t) => m.left + ((t - start) / Math.max(1, end - start)) * (width - m.left - m.right);
  const y = (v) => height - m.bottom - ((v - lo) / Math.max(1e-9, hi - lo)) * (height - m.top - m.bottom);
  const grid = svg("g", { class: "grid" }, root);
  for (const v of ticks) {
    svg("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }, grid);
    text(grid, m.left - 6, y(v) + 4, fmtNumber(v), "tick", "end");
  }
  const span = end - start;
  for (let i = 0; i <= 4; i++) {
    const t = start + (span * i) / 4;
    text(grid, x(t), height - 8, fmtTime(new Date(t), span), "tick", i === 0 ? "start" : i === 4 ? "end" : "middle");
  }
  series.forEach((s, idx) => {
    const cls = `series s${idx % 4}`;
    const g = svg("g", { class: cls, "data-device": s.device_id }, root);
    const p = s.points;
    if (!p.length) return;
    if (p.some((q) => q.max !== q.min)) {
      const upper = p.map((q) => `${x(Date.parse(q.t)).toFixed(1)},${y(q.max).toFixed(1)}`);
      const lower = p.map((q) => `${x(Date.parse(q.t)).toFixed(1)},${y(q.min).toFixed(1)}`).reverse();
      svg("polygon", { points: upper.concat(lower).join(" "), class: "band" }, g);
    }
    const line = p.map((q) => `${x(Date.parse(q.t)).toFixed(1)},${y(q.avg).toFixed(1)}`).join(" ");
    svg("polyline", { points: line, class: "line" }, g);
    if (p.length === 1) svg("circle", { cx: x(Date.parse(p[0].t)), cy: y(p[0].avg), r: 3, class: "dot" }, g);
  });
  for (const th of thresholds) {
    const g = svg("g", { class: `threshold sev-${th.severity}`, "data-rule": th.rule_id }, root);
    svg("line", { x1: m.left, x2: width - m.right, y1: y(th.value), y2: y(th.value) }, g);
    text(g, width - m.right - 2, y(th.value) - 4, `${th.rule_id} ${fmtNumber(th.value)}`, "th-label", "end");
  }
  return root;
}

// Units plotted by longitude/latitude, coloured by worst open severity, districts outlined.
export function districtMap(host, units, opts = {}) {
  const width = opts.width || 800;
  const height = opts.height || 520;
  const pad = 60;
  const placed = units.filter((u) => u.lat !== null && u.lon !== null);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "map", role: "img", "aria-label": opts.label || "map" });
  host.replaceChildren(root);
  if (!placed.length) return root;
  let [lonMin, lonMax] = [Math.min(...placed.map((u) => u.lon)), Math.max(...placed.map((u) => u.lon))];
  let [latMin, latMax] = [Math.min(...placed.map((u) => u.lat)), Math.max(...placed.map((u) => u.lat))];
  const spanLon = Math.max(lonMax - lonMin, 0.01);
  const spanLat = Math.max(latMax - latMin, 0.01);
  // Equirectangular, with longitude shrunk by cos(latitude) so that distances look right.
  const k = Math.cos(((latMin + latMax) / 2) * (Math.PI / 180));
  const scale = Math.min((width - 2 * pad) / (spanLon * k), (height - 2 * pad) / spanLat);
  const cx = (lonMin + lonMax) / 2;
  const cy = (latMin + latMax) / 2;
  const px = (lon) => width / 2 + (lon - cx) * k * scale;
  const py = (lat) => height / 2 - (lat - cy) * scale;
  const districts = new Map();
  for (const u of placed) {
    const d = u.district || "—";
    if (!districts.has(d)) districts.set(d, []);
    districts.get(d).push(u);
  }
  for (const [name, members] of districts) {
    const xs = members.map((u) => px(u.lon));
    const ys = members.map((u) => py(u.lat));
    // The box holds the dots and their labels (about 7.5 px a character at 13 px).
    const x0 = Math.min(...xs) - 26;
    const y0 = Math.min(...ys) - 36;
    const x1 = Math.max(...members.map((u) => px(u.lon) + 22 + 7.5 * u.name.length));
    const y1 = Math.max(...ys) + 22;
    const g = svg("g", { class: "district", "data-district": name }, root);
    svg("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, rx: 14, class: "district-box" }, g);
    text(g, x0 + 8, y0 + 14, name, "district-label");
  }
  for (const u of placed) {
    const sev = u.worst_severity || "none";
    // Filled by the unit's four-colour grade, ringed by its worst open alert (critical pulses).
    const grade = u.grade || "none";
    const a = svg("a", { href: `#/unit/${encodeURIComponent(u.id)}`, class: `unit-dot sev-${sev} grade-${grade}`, "data-unit": u.id, "data-grade": grade }, root);
    const title = svg("title", {}, a);
    title.textContent = `${u.name} (${u.id}) · ${u.open_alerts}` + (opts.gradeText ? ` · ${opts.gradeText(u)}` : "");
    svg("circle", { cx: px(u.lon), cy: py(u.lat), r: u.worst_severity === "critical" ? 11 : 8 }, a);
    if (u.open_alerts) text(a, px(u.lon), py(u.lat) + 4, String(u.open_alerts), "dot-count", "middle");
    text(a, px(u.lon) + 14, py(u.lat) + 4, u.name, "unit-label");
  }
  return root;
}
