// The Silences view: every silence with its target, reason and author, and ending one.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { can, state } from "./state.js";
import { $, absTime, h, toast } from "./util.js";

function silenceTarget(s) {
  return [s.unit_id && `${t("unit")} ${s.unit_id}`, s.device_id && `${t("device")} ${s.device_id}`, s.rule_id || t("silence_every_rule")].filter(Boolean).join(" · ");
}

async function endSilence(s) {
  try {
    await api(`/silences/${s.id}/end`, { method: "POST", body: {} });
    toast(t("silence_ended_toast", { id: s.id }));
  } catch (err) {
    toast(`${t("action_failed")}: ${err.message}`, "error");
  }
  await renderSilences();
}

export async function renderSilences() {
  const main = $("#view");
  const states = state.showEndedSilences ? "pending,active,expired,ended" : "pending,active";
  const data = await api(`/silences?state=${states}&limit=500`);
  const live = (s) => s.state === "pending" || s.state === "active";
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "toolbar" },
        h("h1", { text: t("silences_title") }),
        h("label", { class: "check" }, h("input", { type: "checkbox", id: "show-ended", checked: state.showEndedSilences, onchange: (e) => { state.showEndedSilences = e.target.checked; renderSilences(); } }), h("span", { text: t("show_ended") })),
      ),
      h("p", { class: "muted small", text: t("silences_hint") }),
      data.items.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "grid", id: "silences-table" },
              h("thead", {}, h("tr", {}, ["#", t("status"), t("silence_target"), t("silence_reason"), t("silence_author"), t("silence_starts"), t("silence_ends"), t("silence_covers_critical"), t("silence_alerts"), ""].map((x) => h("th", { text: x })))),
              h(
                "tbody",
                {},
                data.items.map((s) =>
                  h(
                    "tr",
                    { "data-silence": s.id, "data-state": s.state },
                    h("td", { text: String(s.id) }),
                    h("td", {}, h("span", { class: `badge silence-${s.state}`, text: t(`silence_state_${s.state}`) })),
                    h("td", { text: silenceTarget(s) }),
                    h("td", { class: "silence-reason-cell", text: s.reason }),
                    h("td", { text: s.author }),
                    h("td", { title: absTime(s.starts_at), text: absTime(s.starts_at) }),
                    h("td", { text: s.ended_at ? `${t("silence_ended_by")} ${absTime(s.ended_at)} · ${s.ended_by}${s.end_comment ? ` · ${s.end_comment}` : ""}` : absTime(s.ends_at) }),
                    h("td", { text: s.covers_critical ? t("yes") : t("no") }),
                    h("td", { text: String(s.alert_ids.length) }),
                    h("td", {}, can("alerts:act") && live(s) ? h("button", { type: "button", class: "act", "data-action": "end-silence", text: t("end_silence"), onclick: () => endSilence(s) }) : null),
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "empty", text: t("no_silences") }),
    ),
  );
}
