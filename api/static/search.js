// The alert search: every alert, closed ones too, by unit, device, rule, state and when it
// opened; a result opens in the detail beside the list with its whole history.

import { api } from "./api.js";
import { refreshDetail } from "./board.js";
import { ruleName, t } from "./i18n.js";
import { state } from "./state.js";
import { $, absTime, detectorText, h } from "./util.js";

const STATES = ["", "open", "firing", "acknowledged", "resolved", "closed"];
const PAGE = 100;

function query(f, cursor) {
  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const k of ["unit", "device", "rule"]) if (f[k]) q.set(k, f[k]);
  if (f.state) q.set("state", f.state);
  // datetime-local is the screen's local time: sent as an instant with its offset.
  if (f.from) q.set("from", new Date(f.from).toISOString());
  if (f.to) q.set("to", new Date(f.to).toISOString());
  if (cursor) q.set("cursor", cursor);
  return `/alerts?${q}`;
}

function resultRow(a) {
  return h(
    "tr",
    {
      class: `clickable${state.selected === a.id ? " selected" : ""}`,
      "data-id": a.id,
      "data-state": a.state,
      tabindex: "0",
      onclick: () => select(a.id),
      onkeydown: (e) => {
        if (e.key === "Enter") select(a.id);
      },
    },
    h("td", { text: `#${a.id}` }),
    h("td", {}, h("span", { class: `chip sev-${a.severity}`, text: t(`severity_${a.severity}`) })),
    h("td", { text: t(`state_${a.state}`) }),
    h("td", { title: a.rule_id, text: ruleName(a.rule_id) }),
    h("td", { text: a.unit_name }),
    h("td", { text: [a.device_id, detectorText(a)].filter(Boolean).join(" · ") }),
    h("td", { text: absTime(a.opened_at) }),
    h("td", { text: a.closed_at ? absTime(a.closed_at) : "" }),
  );
}

function select(id) {
  state.selected = id;
  for (const tr of document.querySelectorAll("#search-table tbody tr")) tr.classList.toggle("selected", Number(tr.dataset.id) === id);
  refreshDetail();
}

export async function renderSearch() {
  const main = $("#view");
  const f = state.searchForm;
  const input = (key, attrs = {}) => h("input", { id: `sr-${key}`, value: f[key], ...attrs });
  const unit = input("unit", { placeholder: "u1", "aria-label": t("unit") });
  const device = input("device", { placeholder: "u1-utd", "aria-label": t("device") });
  const from = input("from", { type: "datetime-local", "aria-label": t("from") });
  const to = input("to", { type: "datetime-local", "aria-label": t("to") });
  const rules = await api("/rules").catch(() => ({ items: [] }));
  const rule = h(
    "select",
    { id: "sr-rule", "aria-label": t("rule") },
    h("option", { value: "", text: t("any_rule") }),
    rules.items.map((r) => h("option", { value: r.id, selected: r.id === f.rule, text: `${ruleName(r.id)} (${r.id})` })),
  );
  const st = h("select", { id: "sr-state", "aria-label": t("status") }, STATES.map((s) => h("option", { value: s, selected: s === f.state, text: s ? t(`state_${s}`) : t("any_state") })));
  const body = h("tbody", {});
  const summary = h("p", { class: "muted small", id: "search-summary" });
  const more = h("button", { type: "button", id: "search-more", hidden: true, text: t("load_more") });
  let cursor = null;
  let shown = 0;
  const load = async (reset) => {
    if (reset) {
      cursor = null;
      shown = 0;
      body.replaceChildren();
    }
    let page;
    try {
      page = await api(query(f, cursor));
    } catch (err) {
      summary.replaceChildren(h("span", { class: "error", role: "alert", text: t("view_failed", { message: err.message }) }));
      return;
    }
    for (const a of page.items) body.appendChild(resultRow(a));
    shown += page.items.length;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    summary.textContent = shown ? t("results", { n: shown + (cursor ? "+" : "") }) : t("no_results");
  };
  more.addEventListener("click", () => load(false));
  const read = () => Object.assign(f, { unit: unit.value.trim(), device: device.value.trim(), rule: rule.value, state: st.value, from: from.value, to: to.value });
  main.replaceChildren(
    h(
      "section",
      { class: "board search" },
      h(
        "div",
        { class: "panel" },
        h("h1", { text: t("search_title") }),
        h(
          "form",
          {
            class: "toolbar wrap",
            id: "search-form",
            onsubmit: (e) => {
              e.preventDefault();
              read();
              load(true);
            },
          },
          h("label", { class: "field" }, h("span", { text: t("unit") }), unit),
          h("label", { class: "field" }, h("span", { text: t("device") }), device),
          h("label", { class: "field" }, h("span", { text: t("rule") }), rule),
          h("label", { class: "field" }, h("span", { text: t("status") }), st),
          h("label", { class: "field" }, h("span", { text: t("from") }), from),
          h("label", { class: "field" }, h("span", { text: t("to") }), to),
          h("button", { type: "submit", class: "primary", id: "search-go", text: t("search") }),
        ),
        summary,
        h(
          "div",
          { class: "table-wrap" },
          h("table", { class: "grid", id: "search-table" }, h("thead", {}, h("tr", {}, ["#", t("severity"), t("status"), t("rule"), t("unit"), t("device"), t("opened"), t("closed_at")].map((x) => h("th", { text: x })))), body),
        ),
        more,
      ),
      h("aside", { id: "detail", class: "detail" }, h("p", { class: "muted", text: t("no_selection") })),
    ),
  );
  await load(true);
  if (state.selected) refreshDetail();
}
