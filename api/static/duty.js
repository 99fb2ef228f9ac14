// The duty log (值班日志): go on duty, write notes, hand over (the note, to whom; what is open is
// recorded with it), and read the last handover and the latest shifts.

import { api } from "./api.js";
import { actorName, t } from "./i18n.js";
import { $, absTime, h, toast } from "./util.js";

async function act(path, body) {
  try {
    await api(path, { method: "POST", body });
  } catch (err) {
    toast(`${t("action_failed")}: ${err.message}`, "error");
    return;
  }
  renderDuty();
}

function openList(taken) {
  if (!taken) return null;
  return h(
    "div",
    { class: "handover-open" },
    h("p", { class: "muted", text: t("duty_open_at_handover", { alerts: taken.alerts_total, hazards: taken.hazards_open, overdue: taken.hazards_overdue }) }),
    taken.alerts.length
      ? h(
          "ul",
          { class: "compact" },
          taken.alerts.slice(0, 20).map((a) => h("li", {}, h("a", { href: `#/board/${a.id}`, text: `#${a.id}` }), ` ${a.unit_name} · ${t(`severity_${a.severity}`)} · ${t(`state_${a.state}`)}`)),
        )
      : null,
  );
}

function myShift(mine) {
  if (!mine) {
    return h("div", { class: "duty-mine" }, h("p", { class: "muted", text: t("duty_off") }), h("button", { type: "button", class: "primary", id: "duty-start", text: t("duty_start"), onclick: () => act("/duty/start", {}) }));
  }
  const note = h("textarea", { id: "duty-note", rows: "2", maxlength: "4000" });
  const handover = h("textarea", { id: "duty-handover", rows: "3", maxlength: "4000" });
  const to = h("input", { id: "duty-handed-to", maxlength: "200" });
  return h(
    "div",
    { class: "duty-mine", "data-shift": mine.id },
    h("p", { text: t("duty_on_since", { at: absTime(mine.started_at) }) }),
    mine.notes.length ? h("ol", { class: "history" }, mine.notes.map((n) => h("li", {}, h("time", { datetime: n.at, text: absTime(n.at) }), h("span", { text: n.text })))) : null,
    h("label", { class: "field" }, h("span", { text: t("duty_note") }), note),
    h("button", { type: "button", class: "act", id: "duty-add-note", text: t("duty_add_note"), onclick: () => note.value.trim() && act("/duty/note", { text: note.value }) }),
    h("h3", { text: t("duty_handover") }),
    h("label", { class: "field" }, h("span", { text: t("duty_handover_note") }), handover),
    h("label", { class: "field" }, h("span", { text: t("duty_handed_to") }), to),
    h("button", { type: "button", class: "primary", id: "duty-end", text: t("duty_end"), onclick: () => (handover.value.trim() ? act("/duty/end", { handover_note: handover.value, handed_to: to.value }) : toast(t("duty_handover_needed"), "error")) }),
  );
}

export async function renderDuty() {
  const main = $("#view");
  const log = await api("/duty?limit=30");
  const last = log.last_handover;
  main.replaceChildren(
    ...[
      h("section", { class: "panel", id: "duty" }, h("h1", { text: t("duty_title") }), myShift(log.mine)),
      last
        ? h(
            "section",
            { class: "panel", id: "duty-last" },
            h("h2", { text: t("duty_last_handover") }),
            h("p", { text: t("duty_handed_over", { from: actorName(last.operator), to: last.handed_to || "–", at: absTime(last.ended_at) }) }),
            h("blockquote", { class: "handover-note", text: last.handover_note }),
            openList(last.open_at_handover),
          )
        : null,
      h(
        "section",
        { class: "panel" },
        h("h2", { text: t("duty_shifts") }),
        h(
          "table",
          { class: "grid small", id: "duty-shifts" },
          h("thead", {}, h("tr", {}, [t("duty_operator"), t("duty_started"), t("duty_ended"), t("duty_handed_to"), t("duty_handover_note")].map((x) => h("th", { text: x })))),
          h("tbody", {}, log.shifts.map((s) => h("tr", { "data-shift": s.id }, h("td", { text: actorName(s.operator) }), h("td", { text: absTime(s.started_at) }), h("td", { text: s.ended_at ? absTime(s.ended_at) : t("duty_on") }), h("td", { text: s.handed_to || "–" }), h("td", { class: "desc", text: s.handover_note })))),
        ),
      ),
    ].filter(Boolean),
  );
}
