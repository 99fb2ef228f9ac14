// Shared helpers for every view: building DOM elements, toasts, icons, time and value
// formatting, and the severity order and small predicates on alerts.

import { getLang, t } from "./i18n.js";

export const SEVERITIES = ["critical", "major", "warning", "info"];
export const SEV_RANK = { critical: 0, major: 1, warning: 2, info: 3 };
// The four-colour risk grade (四色风险等级), from the lowest risk to the highest.
export const GRADES = ["blue", "yellow", "orange", "red"];

// ---------- small DOM helpers ----------

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return el;
}

export const $ = (sel) => document.querySelector(sel);

export function icon(name, cls = "icon-img") {
  return h("img", { src: `/static/icons/${name}.svg`, alt: "", class: cls, "aria-hidden": "true" });
}

export function toast(message, kind = "info") {
  const box = $("#toast");
  const item = h("div", { class: `toast ${kind}`, text: message });
  box.appendChild(item);
  setTimeout(() => item.remove(), 6000);
}

export function relTime(iso) {
  if (!iso) return t("never");
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return t("ago_s", { n: s });
  if (s < 3600) return t("ago_m", { n: Math.round(s / 60) });
  if (s < 86400) return t("ago_h", { n: Math.round(s / 3600) });
  return t("ago_d", { n: Math.round(s / 86400) });
}

export function absTime(iso) {
  return iso ? new Date(iso).toLocaleString(getLang()) : "";
}

export function timeEl(iso) {
  return h("time", { datetime: iso || "", "data-rel": iso || "", title: absTime(iso), text: relTime(iso) });
}

export function fmtValue(v) {
  if (v === null || v === undefined) return "–";
  return Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(4)).toString();
}

// ---------- alerts ----------

export function isFire(a) {
  return a.needs_verification;
}

export function sortAlerts(list) {
  return list.sort((x, y) => SEV_RANK[x.severity] - SEV_RANK[y.severity] || Date.parse(y.opened_at) - Date.parse(x.opened_at) || y.id - x.id);
}

// Where an alert is: the detector (the panel's text for the point, and its loop and point),
// else the device's place in the unit.
export function detectorText(a) {
  const parts = [a.point_text, a.loop !== null && a.loop !== undefined && a.point !== null && a.point !== undefined ? t("loop_point", { loop: a.loop, point: a.point }) : null].filter(Boolean);
  return parts.join(" · ");
}

export function whereText(a) {
  return [detectorText(a), a.device_location].filter(Boolean).join(" · ");
}

// Open fire alarms (any state but closed) per unit: more than one detector of a unit alarming
// is a fire that spreads.
export function fireCountsByUnit(alerts) {
  const counts = new Map();
  for (const a of alerts) if (isFire(a) && a.state !== "closed") counts.set(a.unit_id, (counts.get(a.unit_id) || 0) + 1);
  return counts;
}

// ---------- risk grade ----------

// A unit's grade reasons as one sentence in the console's language.
export function gradeReasons(reasons) {
  const zh = getLang() === "zh-CN";
  const said = (reasons || []).map((r) => (zh ? r["zh-CN"] : r.en));
  return said.length ? said.join(zh ? "，" : ", ") : t("grade_no_reason");
}

// "Orange: 3 false alarms in 7 days" (or "not graded yet").
export function gradeText(u) {
  return u.grade ? `${t(`grade_${u.grade}`)}: ${gradeReasons(u.grade_reasons)}` : t("grade_none");
}

// The grade as a coloured chip, its reasons in the tooltip.
export function gradeChip(u) {
  const g = u.grade || "none";
  return h("span", { class: `chip grade grade-${g}`, "data-grade": g, title: gradeText(u), text: t(`grade_${g}`) });
}

// Open a printable page the API serves (a unit's notice, a sheet of QR codes) in a new tab:
// fetched with the token, shown from a blob, so the token never goes into a URL.
export async function openPrintable(fetchRaw, path) {
  const tab = window.open("", "_blank");
  const res = await fetchRaw(path);
  if (!res.ok) {
    if (tab) tab.close();
    throw new Error(`${res.status} ${res.statusText}`);
  }
  const url = URL.createObjectURL(await res.blob());
  if (tab) tab.location.href = url;
  else location.href = url;
}
