// The hazard closed loop (隐患闭环): counts by district, the list, one hazard with its steps and
// photos and the steps its state allows, and the report form of a unit's page (phone-sized: a
// grid worker reports from the shop floor, photos taken with the phone's camera and shrunk
// before they go up a slow 4G link).

import { api } from "./api.js";
import { actorName, t } from "./i18n.js";
import { can, state } from "./state.js";
import { $, absTime, h, toast } from "./util.js";

const CATEGORIES = ["blocked_exit", "fire_equipment", "electrical", "fire_water", "alarm_system", "storage", "other"];
// The steps each state allows (supervision/hazards.py STEPS); review steps need hazards:review.
const STEPS = {
  found: ["notify", "rectify"],
  notified: ["rectify", "submit"],
  rectifying: ["submit"],
  submitted: ["review", "reject"],
  reviewed: ["close"],
  closed: [],
};
const REVIEW = new Set(["review", "reject", "close"]);
const MAX_SIDE = 1600;

function stateChip(hz) {
  return h("span", { class: `badge hstate-${hz.state}${hz.overdue_at && hz.state !== "closed" ? " overdue" : ""}`, text: t(`hstate_${hz.state}`) + (hz.overdue_at && hz.state !== "closed" ? ` · ${t("overdue")}` : "") });
}

// A photo from the phone's camera, shrunk to at most MAX_SIDE pixels as JPEG (a 4 MB picture
// becomes a few hundred kB); a file the browser cannot decode goes up as it is (the server
// checks what it is).
async function shrink(file) {
  try {
    const bmp = await createImageBitmap(file);
    const scale = Math.min(1, MAX_SIDE / Math.max(bmp.width, bmp.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bmp.width * scale);
    canvas.height = Math.round(bmp.height * scale);
    canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
    return await new Promise((resolve) => canvas.toBlob((b) => resolve(b || file), "image/jpeg", 0.85));
  } catch {
    return file;
  }
}

async function uploadPhotos(hazardId, files) {
  const ids = [];
  for (const file of files) {
    const blob = await shrink(file);
    const res = await fetch(`/api/v1/hazards/${hazardId}/photos`, {
      method: "POST",
      headers: { Authorization: `Bearer ${state.token}`, "Content-Type": blob.type || "application/octet-stream" },
      body: blob,
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.message || res.statusText);
    ids.push(data.id);
  }
  return ids;
}

// Photos are served with the token, so they are fetched and shown from blob URLs.
function photoThumb(hazardId, photoId) {
  const img = h("img", { class: "hazard-photo", alt: `${t("photo")} ${photoId}`, "data-photo": photoId });
  fetch(`/api/v1/hazards/${hazardId}/photos/${photoId}`, { headers: { Authorization: `Bearer ${state.token}` } })
    .then((r) => (r.ok ? r.blob() : null))
    .then((b) => {
      if (b) img.src = URL.createObjectURL(b);
    })
    .catch(() => {});
  return img;
}

function stepItem(hazardId, e) {
  return h(
    "li",
    { "data-kind": e.kind },
    h("time", { datetime: e.at, text: absTime(e.at) }),
    h("strong", { text: t(`hkind_${e.kind}`) }),
    h("span", { class: "actor", text: actorName(e.actor) }),
    e.comment ? h("span", { class: "muted", text: e.comment }) : null,
    e.photo_ids.length ? h("div", { class: "photos" }, e.photo_ids.map((p) => photoThumb(hazardId, p))) : null,
  );
}

function stepForm(hz, onDone) {
  const steps = (STEPS[hz.state] || []).filter((s) => can(REVIEW.has(s) ? "hazards:review" : "hazards:act"));
  if (!steps.length) return null;
  const comment = h("textarea", { class: "step-comment", rows: "2", maxlength: "2000", placeholder: t("comment") });
  const files = h("input", { type: "file", class: "step-photos", accept: "image/*", capture: "environment", multiple: true });
  const run = async (action, button) => {
    button.disabled = true;
    try {
      const photo_ids = files.files.length ? await uploadPhotos(hz.id, files.files) : [];
      await api(`/hazards/${hz.id}/${action}`, { method: "POST", body: { comment: comment.value, photo_ids } });
      toast(t(`hact_${action}`));
      onDone();
    } catch (err) {
      toast(`${t("action_failed")}: ${err.message}`, "error");
      button.disabled = false;
    }
  };
  return h(
    "div",
    { class: "hazard-steps" },
    h("label", { class: "field" }, h("span", { text: t("comment") }), comment),
    h("label", { class: "field" }, h("span", { text: t("add_photos") }), files),
    h(
      "div",
      { class: "actions" },
      steps.map((s) => {
        const b = h("button", { type: "button", class: `act hstep${s === "reject" ? "" : " primary"}`, "data-step": s, text: t(`hact_${s}`) });
        b.addEventListener("click", () => run(s, b));
        return b;
      }),
    ),
  );
}

// After a step, `redraw` draws the hazard again (with whatever else shows it); it draws the
// detail once: a second drawing would replace a comment being typed into the first.
async function showHazard(box, id, redraw) {
  let d;
  try {
    d = await api(`/hazards/${id}`);
  } catch (err) {
    box.replaceChildren(h("p", { class: "error", text: err.message }));
    return;
  }
  const hz = d.hazard;
  const reload = redraw || (() => showHazard(box, id));
  // Only nodes: a missing part (no step left) would show as the text "null".
  const parts = [
    h("div", { class: "detail-head", "data-hazard": hz.id }, stateChip(hz), h("h2", { text: `#${hz.id} ${t(`hcat_${hz.category}`)}` })),
    h("p", { class: "detail-msg", text: hz.description }),
    h(
      "dl",
      { class: "facts" },
      h("dt", { text: t("unit") }),
      h("dd", { text: `${hz.unit_name} (${hz.unit_id})` }),
      h("dt", { text: t("hazard_severity") }),
      h("dd", { text: t(`hsev_${hz.severity}`) }),
      h("dt", { text: t("found_by") }),
      h("dd", { text: `${hz.source === "data" ? t("hazard_source_data") : actorName(hz.found_by)} · ${absTime(hz.found_at)}` }),
      h("dt", { text: t("responsible") }),
      h("dd", { text: hz.responsible || "–" }),
      h("dt", { text: t("deadline") }),
      h("dd", { class: hz.overdue_at && hz.state !== "closed" ? "bad" : "", text: absTime(hz.deadline) }),
    ),
    stepForm(hz, reload),
    h("h3", { text: t("history") }),
    h("ol", { class: "history hazard-history" }, d.events.map((e) => stepItem(hz.id, e))),
  ];
  box.replaceChildren(...parts.filter(Boolean));
}

function hazardRow(hz, onOpen) {
  return h(
    "tr",
    { "data-hazard": hz.id, "data-state": hz.state, class: "clickable", onclick: () => onOpen(hz.id) },
    h("td", { text: `#${hz.id}` }),
    h("td", {}, stateChip(hz)),
    h("td", { text: hz.unit_name }),
    h("td", { text: t(`hcat_${hz.category}`) }),
    h("td", { text: t(`hsev_${hz.severity}`) }),
    h("td", { class: "desc", text: hz.description }),
    h("td", { class: hz.overdue_at && hz.state !== "closed" ? "bad" : "", text: absTime(hz.deadline) }),
  );
}

function hazardTable(items, onOpen) {
  if (!items.length) return h("p", { class: "empty", text: t("no_hazards") });
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "grid", id: "hazards-table" },
      h("thead", {}, h("tr", {}, ["#", t("status"), t("unit"), t("hazard_category"), t("hazard_severity"), t("description"), t("deadline")].map((x) => h("th", { text: x })))),
      h("tbody", {}, items.map((hz) => hazardRow(hz, onOpen))),
    ),
  );
}

export async function renderHazards() {
  const main = $("#view");
  const states = state.showClosedHazards ? "" : "&state=found,notified,rectifying,submitted,reviewed";
  const group = state.hazardGroup || "district";
  const [counts, list] = await Promise.all([api(`/hazards/counts?group=${group}`), api(`/hazards?limit=500${states}`)]);
  // Counted per district, per unit, or per person who found them (what each grid worker did).
  const groupSelect = h(
    "select",
    { id: "hazard-group", onchange: (e) => { state.hazardGroup = e.target.value; renderHazards(); } },
    ["district", "unit", "finder"].map((g) => h("option", { value: g, selected: g === group, text: t(`hz_by_${g}`) })),
  );
  const detail = h("div", { id: "hazard-detail", class: "panel" }, h("p", { class: "muted", text: t("pick_hazard") }));
  // The hazard open in the detail stays open when a step re-renders the list and counts.
  const open = (id) => {
    state.selectedHazard = id;
    showHazard(detail, id, () => renderHazards());
  };
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "toolbar" },
        h("h1", { text: t("hazards_title") }),
        groupSelect,
        h("label", { class: "check" }, h("input", { type: "checkbox", id: "show-closed-hazards", checked: state.showClosedHazards, onchange: (e) => { state.showClosedHazards = e.target.checked; renderHazards(); } }), h("span", { text: t("show_closed") })),
      ),
      h(
        "table",
        { class: "grid small", id: "hazard-counts" },
        h("thead", {}, h("tr", {}, [t(`hz_by_${group}`), t("hz_found"), t("hz_open"), t("hz_closed"), t("hz_overdue")].map((x) => h("th", { text: x })))),
        h("tbody", {}, counts.rows.map((r) => h("tr", { "data-key": r.key }, h("td", { text: r.name || "–" }), h("td", { text: r.found }), h("td", { text: r.open }), h("td", { text: r.closed }), h("td", { class: r.overdue ? "bad overdue" : "overdue", text: r.overdue })))),
      ),
      hazardTable(list.items, open),
    ),
    detail,
  );
  if (state.selectedHazard) showHazard(detail, state.selectedHazard, () => renderHazards());
}

// A unit's open hazards and, for those who may, the form to report one there.
export function unitHazards(unitId) {
  const box = h("div", { id: "unit-hazards" }, h("p", { class: "muted", text: "…" }));
  const detail = h("div", { class: "hazard-detail" });
  const load = async () => {
    let list;
    try {
      list = await api(`/hazards?unit=${encodeURIComponent(unitId)}&state=found,notified,rectifying,submitted,reviewed`);
    } catch (err) {
      box.replaceChildren(h("p", { class: "error", text: err.message }));
      return;
    }
    const show = (id) =>
      showHazard(detail, id, () => {
        load();
        show(id);
      });
    box.replaceChildren(...[hazardTable(list.items, show), can("hazards:act") ? reportForm(unitId, load) : null, detail].filter(Boolean));
  };
  load();
  return box;
}

function reportForm(unitId, onDone) {
  const category = h("select", { name: "category", id: "hazard-category" }, CATEGORIES.map((c) => h("option", { value: c, text: t(`hcat_${c}`) })));
  const severity = h("select", { name: "severity", id: "hazard-severity" }, ["general", "major"].map((s) => h("option", { value: s, text: t(`hsev_${s}`) })));
  const description = h("textarea", { name: "description", id: "hazard-description", rows: "3", maxlength: "2000", required: true });
  const responsible = h("input", { name: "responsible", id: "hazard-responsible", maxlength: "200" });
  const files = h("input", { type: "file", id: "hazard-photos", accept: "image/*", capture: "environment", multiple: true });
  const submit = h("button", { type: "submit", class: "primary", id: "hazard-report", text: t("report_hazard") });
  return h(
    "form",
    {
      class: "hazard-report",
      onsubmit: async (e) => {
        e.preventDefault();
        if (!description.value.trim()) return;
        submit.disabled = true;
        try {
          const hz = await api("/hazards", { method: "POST", body: { unit_id: unitId, category: category.value, severity: severity.value, description: description.value, responsible: responsible.value } });
          if (files.files.length) await uploadPhotos(hz.id, files.files);
          toast(t("hazard_reported", { id: hz.id }));
          onDone();
        } catch (err) {
          toast(`${t("action_failed")}: ${err.message}`, "error");
          submit.disabled = false;
        }
      },
    },
    h("h3", { text: t("report_hazard") }),
    h("label", { class: "field" }, h("span", { text: t("hazard_category") }), category),
    h("label", { class: "field" }, h("span", { text: t("hazard_severity") }), severity),
    h("label", { class: "field" }, h("span", { text: t("description") }), description),
    h("label", { class: "field" }, h("span", { text: t("responsible") }), responsible),
    h("label", { class: "field" }, h("span", { text: t("add_photos") }), files),
    submit,
  );
}
