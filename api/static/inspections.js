// Inspections against the unit's code (扫码检查) on the unit's page: the unit's past inspections,
// and, for those who may report hazards, the checklist to fill in. Opened from the unit's QR
// sticker (#/unit/<id>/code/<code>) the inspection is marked as made at the unit. Phone-sized
// first: a grid worker fills it in standing in the shop, on a 4G link that may drop, so the
// submission carries an id of its own and a resend finds the first instead of a second record.

import { api } from "./api.js";
import { getLang, t } from "./i18n.js";
import { can, renderView } from "./state.js";
import { absTime, h, toast } from "./util.js";

let checklist = null;

async function loadChecklist() {
  if (!checklist) checklist = await api("/inspections/checklist");
  return checklist;
}

function itemText(item) {
  return getLang() === "zh-CN" ? item["zh-CN"] : item.en;
}

function newRef() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "web-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function inspectionRow(x, items) {
  const failed = x.results.filter((r) => !r.ok);
  const names = new Map(items.map((i) => [i.id, itemText(i)]));
  return h(
    "li",
    { class: "inspection", "data-id": x.id, "data-scanned": String(x.scanned) },
    h(
      "div",
      { class: "inspection-head" },
      h("strong", { text: absTime(x.at) }),
      h("span", { text: ` ${x.inspector} ` }),
      x.scanned ? h("span", { class: "chip ok scanned", text: t("inspection_scanned") }) : h("span", { class: "chip muted", text: t("inspection_not_scanned") }),
      h("span", { class: failed.length ? "chip sev-major" : "chip ok", text: failed.length ? t("inspection_failed_n", { n: failed.length }) : t("inspection_all_ok") }),
    ),
    failed.length ? h("ul", { class: "inspection-failed" }, failed.map((r) => h("li", { text: names.get(r.item) + (r.note ? ` — ${r.note}` : "") }))) : null,
    x.comment ? h("p", { class: "muted small", text: x.comment }) : null,
  );
}

// The checklist as a form: each item passed or failed (a failed one asks what was seen).
function inspectionForm(unitId, code, items, onDone) {
  let ref = newRef();
  const rows = items.map((item) => {
    const name = `insp-${item.id}`;
    const ok = h("input", { type: "radio", name, value: "ok", checked: true });
    const bad = h("input", { type: "radio", name, value: "failed" });
    const note = h("input", { class: "inspection-note", maxlength: "500", placeholder: t("inspection_note"), hidden: true });
    const sync = () => {
      note.hidden = !bad.checked;
      row.classList.toggle("failed", bad.checked);
    };
    ok.onchange = sync;
    bad.onchange = sync;
    const row = h(
      "fieldset",
      { class: "inspection-item", "data-item": item.id },
      h("legend", { text: itemText(item) }),
      h("label", { class: "check" }, ok, h("span", { text: t("inspection_ok") })),
      h("label", { class: "check" }, bad, h("span", { text: t("inspection_bad") })),
      note,
    );
    return { item, bad, note, row };
  });
  const comment = h("textarea", { id: "inspection-comment", rows: "2", maxlength: "2000" });
  const submit = h("button", { type: "submit", class: "primary", id: "inspection-submit", text: t("inspection_submit") });
  return h(
    "form",
    {
      class: "inspection-form",
      onsubmit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        const body = {
          results: rows.map((r) => ({ item: r.item.id, ok: !r.bad.checked, note: r.bad.checked ? r.note.value : "" })),
          comment: comment.value,
          client_ref: ref,
        };
        if (code) body.code = code;
        try {
          const out = await api(`/units/${encodeURIComponent(unitId)}/inspections`, { method: "POST", body });
          ref = newRef();
          toast(t("inspection_recorded", { n: out.inspection.hazard_ids.length }));
          // Its failed items are hazards now: the whole page shows them.
          onDone(out.inspection.hazard_ids.length);
        } catch (err) {
          // The same ref goes again on the next try: if the first reached the server, the
          // resend finds it.
          toast(`${t("action_failed")}: ${err.message}`, "error");
          submit.disabled = false;
        }
      },
    },
    h("h3", { text: t("inspection_new") }),
    code ? h("p", { class: "chip ok scanned", id: "inspection-at-unit", text: t("inspection_from_code") }) : h("p", { class: "muted small", text: t("inspection_no_code") }),
    rows.map((r) => r.row),
    h("label", { class: "field" }, h("span", { text: t("comment") }), comment),
    submit,
  );
}

export function unitInspections(unitId, code) {
  const box = h("div", { id: "unit-inspections" }, h("p", { class: "muted", text: "…" }));
  const load = async (newHazards = 0) => {
    if (newHazards) {
      renderView();
      return;
    }
    let items, list;
    try {
      [items, list] = await Promise.all([loadChecklist().then((c) => c.items), api(`/inspections?unit=${encodeURIComponent(unitId)}&limit=10`)]);
    } catch (err) {
      box.replaceChildren(h("p", { class: "error", text: err.message }));
      return;
    }
    box.replaceChildren(
      list.items.length ? h("ul", { class: "inspections", id: "inspection-list" }, list.items.map((x) => inspectionRow(x, items))) : h("p", { class: "muted small", id: "inspection-list", text: t("inspection_none") }),
      can("hazards:act") ? inspectionForm(unitId, code, items, load) : null,
    );
    // Opened from the sticker: the checklist is what the inspector came for.
    if (code && can("hazards:act")) box.querySelector("form.inspection-form").scrollIntoView({ block: "start" });
  };
  load();
  return box;
}
