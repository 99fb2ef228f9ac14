// The alert board: counters by severity, the open-alert list and its filters, the selected
// alert's detail, the actions (acknowledge, resolve, close with its dialog), keeping the open
// alerts up to date, and the "silenced" mark on alerts.

import { api } from "./api.js";
import { getLang, t } from "./i18n.js";
import { updateAlarm } from "./sound.js";
import { can, currentRoute, renderView, state } from "./state.js";
import { $, absTime, fmtValue, h, icon, isFire, SEVERITIES, sortAlerts, timeEl, toast } from "./util.js";

const CAUSES = ["test", "dust_steam", "equipment_fault", "malicious", "unknown"];

// ---------- counters (in the top bar) ----------

export function renderCounters() {
  const box = $("#counters");
  if (!box) return;
  const counts = Object.fromEntries(SEVERITIES.map((s) => [s, 0]));
  let unackedCritical = false;
  for (const a of state.alerts.values()) {
    counts[a.severity] += 1;
    if (a.severity === "critical" && a.state === "firing") unackedCritical = true;
  }
  box.replaceChildren(
    ...SEVERITIES.map((s) =>
      h(
        "a",
        {
          href: "#/board",
          class: `count sev-${s}${s === "critical" && unackedCritical ? " flashing" : ""}`,
          "data-severity": s,
          title: t(`severity_${s}`),
          onclick: () => {
            state.filter.severity = state.filter.severity === s ? "" : s;
            if (currentRoute().view === "board") renderBoard();
          },
        },
        h("span", { class: "n", text: counts[s] }),
        h("span", { class: "label", text: t(`severity_${s}`) }),
      ),
    ),
  );
}

// ---------- alerts: shared rendering and actions ----------

function stateBadge(a) {
  const unacked = a.state === "resolved" && !a.acknowledged_at;
  return h("span", { class: `badge state-${a.state}${unacked ? " unacked" : ""}`, title: unacked ? t("cleared_unacked") : "", text: t(`state_${a.state}`) + (unacked ? " *" : "") });
}

function actionButtons(a) {
  if (!can("alerts:act") || a.state === "closed") return null;
  const buttons = [];
  if (!a.acknowledged_at && (a.state === "firing" || a.state === "resolved")) {
    buttons.push(h("button", { type: "button", class: "act ack primary", "data-action": "ack", text: t("ack"), onclick: (e) => doAction(e, a, "ack") }));
  }
  if (a.state === "firing" || a.state === "acknowledged") {
    buttons.push(h("button", { type: "button", class: "act resolve", "data-action": "resolve", text: t("resolve"), onclick: (e) => doAction(e, a, "resolve") }));
  }
  buttons.push(
    h("button", {
      type: "button",
      class: `act close${isFire(a) ? " verify" : ""}`,
      "data-action": "close",
      text: isFire(a) ? t("verify_close") : t("close"),
      onclick: (e) => {
        e.stopPropagation();
        openCloseDialog(a);
      },
    }),
  );
  return h("div", { class: "actions" }, buttons);
}

export function alertItem(a) {
  const msg = getLang() === "zh-CN" ? a.message["zh-CN"] : a.message.en;
  const fire = isFire(a);
  return h(
    "li",
    {
      class: `alert sev-${a.severity} state-${a.state}${fire ? " fire" : ""}${a.silenced ? " silenced" : ""}${state.selected === a.id ? " selected" : ""}`,
      "data-id": a.id,
      "data-silenced": a.silenced ? String(silenceIdOf(a) ?? "") : null,
      "data-severity": a.severity,
      "data-state": a.state,
      tabindex: "0",
      onclick: () => selectAlert(a.id),
      onkeydown: (e) => {
        if (e.key === "Enter") selectAlert(a.id);
      },
    },
    h(
      "div",
      { class: "alert-head" },
      h("span", { class: `chip sev-${a.severity}`, text: t(`severity_${a.severity}`) }),
      fire ? h("span", { class: "fire-tag" }, icon("flame"), t("fire_alarm")) : null,
      stateBadge(a),
      silencedTag(a),
      h("span", { class: "rule", text: a.rule_id }),
      a.count > 1 ? h("span", { class: "repeat", title: t("count"), text: `×${a.count}` }) : null,
      h("span", { class: "grow" }),
      timeEl(a.opened_at),
    ),
    h("div", { class: "alert-msg", text: msg }),
    h(
      "div",
      { class: "alert-meta" },
      h("a", { href: can("units:read") ? `#/unit/${encodeURIComponent(a.unit_id)}` : null, onclick: (e) => e.stopPropagation(), text: a.unit_name }),
      h("span", { text: a.device_id }),
      a.district ? h("span", { text: a.district }) : null,
      a.metric && a.value !== null ? h("span", { class: "value", text: `${t("value")} ${fmtValue(a.value)}${a.threshold !== null ? ` / ${fmtValue(a.threshold)}` : ""}` }) : null,
    ),
    actionButtons(a),
  );
}

async function doAction(event, a, action, body = {}) {
  if (event) event.stopPropagation();
  try {
    const updated = await api(`/alerts/${a.id}/${action}`, { method: "POST", body });
    upsertAlert(updated);
    refreshDetail();
    return true;
  } catch (err) {
    toast(`${t("action_failed")}: ${err.message}`, "error");
    return false;
  }
}

function openCloseDialog(a) {
  const dialog = $("#close-dialog");
  const fire = isFire(a);
  const causeSelect = h("select", { id: "close-cause", name: "cause" }, CAUSES.map((c) => h("option", { value: c, text: t(`cause_${c}`) })));
  const causeRow = h("label", { class: "field cause-row", hidden: true }, h("span", { text: t("cause") }), causeSelect);
  const options = fire ? ["confirmed_fire", "false_alarm"] : ["", "confirmed_fire", "false_alarm"];
  const radios = options.map((v, i) =>
    h(
      "label",
      { class: "radio" },
      h("input", {
        type: "radio",
        name: "verification",
        value: v,
        checked: !fire && i === 0,
        required: fire,
        onchange: () => {
          causeRow.hidden = v !== "false_alarm";
        },
      }),
      h("span", { text: v ? t(v) : t("none") }),
    ),
  );
  const comment = h("textarea", { id: "close-comment", name: "comment", rows: "2", maxlength: "2000" });
  const form = h(
    "form",
    {
      method: "dialog",
      onsubmit: async (e) => {
        e.preventDefault();
        const picked = form.querySelector("input[name=verification]:checked");
        const verification = picked ? picked.value : "";
        const body = { comment: comment.value };
        if (verification) body.verification = verification;
        if (verification === "false_alarm") body.cause = causeSelect.value;
        if (await doAction(null, a, "close", body)) dialog.close();
      },
    },
    h("h2", { text: `${t("close_title")} #${a.id}` }),
    h("p", { class: "muted", text: `${a.unit_name} · ${a.device_id} · ${a.rule_id}` }),
    fire ? h("p", { class: "warn", text: t("fire_must_verify") }) : null,
    h("fieldset", {}, h("legend", { text: t("verification") }), radios),
    causeRow,
    h("label", { class: "field" }, h("span", { text: t("comment") }), comment),
    h(
      "div",
      { class: "row end" },
      h("button", { type: "button", class: "ghost", text: t("cancel"), onclick: () => dialog.close() }),
      h("button", { type: "submit", class: "primary", id: "close-confirm", text: t("confirm") }),
    ),
  );
  dialog.replaceChildren(form);
  dialog.showModal();
}

export function upsertAlert(a) {
  const had = state.alerts.get(a.id);
  if (a.silenced && silenceIdOf(a) === null) scheduleSilences();
  if (a.state === "closed") state.alerts.delete(a.id);
  else state.alerts.set(a.id, a);
  const route = currentRoute().view;
  if (route === "board") renderBoardList();
  renderCounters();
  updateAlarm(!had && isFire(a) && a.state === "firing");
  if (route === "unit" && currentRoute().arg === a.unit_id) scheduleRefresh();
  if (route === "map" || route === "units") scheduleRefresh();
}

let refreshTimer = null;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => renderView(), 800);
}

export async function loadOpenAlerts() {
  await loadSilences().catch(() => {});
  const page = await api("/alerts?state=open&limit=1000");
  state.alerts = new Map(page.items.map((a) => [a.id, a]));
  renderCounters();
  updateAlarm();
  if (currentRoute().view === "board") renderBoardList();
}

// ---------- silences: the mark on silenced alerts ----------

// Silences, newest first, in every state: an alert keeps the mark of a silence that ended
// while nobody had handled it yet.
async function loadSilences() {
  const data = await api("/silences?state=pending,active,expired,ended&limit=200");
  state.silences = new Map(data.items.map((s) => [s.id, s]));
  state.silenceOf = new Map();
  for (const s of data.items) for (const id of s.alert_ids) if (!state.silenceOf.has(id)) state.silenceOf.set(id, s.id);
}

let silencesTimer = null;
function scheduleSilences() {
  clearTimeout(silencesTimer);
  silencesTimer = setTimeout(async () => {
    await loadSilences().catch(() => {});
    if (currentRoute().view === "board") {
      renderBoardList();
      refreshDetail();
    }
  }, 300);
}

function silenceIdOf(a) {
  if (a.silenced_by !== undefined && a.silenced_by !== null) return a.silenced_by;
  return state.silenceOf.has(a.id) ? state.silenceOf.get(a.id) : null;
}

function silenceTitle(a) {
  const s = state.silences.get(silenceIdOf(a));
  if (!s) return t("silenced_plain");
  const text = t("silenced_title", { id: s.id, author: s.author, until: absTime(s.ends_at), reason: s.reason });
  return a.severity === "critical" || isFire(a) ? `${text}\n${t("silenced_critical")}` : text;
}

function silenceText(a) {
  const s = state.silences.get(silenceIdOf(a));
  if (!s) return t("silenced_plain");
  return `#${s.id} · ${s.reason} · ${s.author} · ${t("silence_ends")} ${absTime(s.ends_at)}${a.severity === "critical" || isFire(a) ? ` · ${t("silenced_critical")}` : ""}`;
}

function silencedTag(a) {
  if (!a.silenced) return null;
  const id = silenceIdOf(a);
  const s = state.silences.get(id);
  return h(
    "span",
    { class: "silenced-tag", "data-silence": id ?? "", title: silenceTitle(a) },
    icon("bell-off"),
    id === null ? t("silenced_plain") : t("silenced_mark", { id }),
    s ? h("span", { class: "silenced-reason", text: ` · ${s.reason}` }) : null,
    s && s.state !== "active" ? h("span", { class: "silenced-state", text: ` (${t(`silence_state_${s.state}`)})` }) : null,
  );
}

// ---------- the board ----------

export function renderBoard() {
  const main = $("#view");
  const search = h("input", {
    type: "search",
    id: "filter",
    placeholder: t("filter_placeholder"),
    value: state.filter.text,
    "aria-label": t("filter"),
    oninput: (e) => {
      state.filter.text = e.target.value;
      renderBoardList();
    },
  });
  const sev = h(
    "select",
    {
      id: "severity-filter",
      "aria-label": t("all_severities"),
      onchange: (e) => {
        state.filter.severity = e.target.value;
        renderBoardList();
      },
    },
    h("option", { value: "", text: t("all_severities") }),
    SEVERITIES.map((s) => h("option", { value: s, selected: state.filter.severity === s, text: t(`severity_${s}`) })),
  );
  main.replaceChildren(
    h(
      "section",
      { class: "board" },
      h(
        "div",
        { class: "board-list" },
        h("div", { class: "toolbar" }, h("h1", { text: t("open_alerts") }), search, sev),
        h("ul", { id: "alert-list", class: "alerts", "aria-live": "polite" }),
      ),
      h("aside", { id: "detail", class: "detail" }, h("p", { class: "muted", text: t("no_selection") })),
    ),
  );
  renderBoardList();
  if (state.selected) refreshDetail();
}

function renderBoardList() {
  const list = $("#alert-list");
  if (!list) return;
  const text = state.filter.text.toLowerCase();
  const items = sortAlerts([...state.alerts.values()]).filter(
    (a) =>
      (!state.filter.severity || a.severity === state.filter.severity) &&
      (!text || [a.unit_name, a.unit_id, a.device_id, a.rule_id, a.district].some((f) => (f || "").toLowerCase().includes(text))),
  );
  list.replaceChildren(...(items.length ? items.map(alertItem) : [h("li", { class: "empty", text: t("no_alerts") })]));
  const sel = $("#severity-filter");
  if (sel) sel.value = state.filter.severity;
}

function selectAlert(id) {
  state.selected = id;
  for (const li of document.querySelectorAll("#alert-list li.alert")) li.classList.toggle("selected", Number(li.dataset.id) === id);
  refreshDetail();
}

export async function refreshDetail() {
  const box = $("#detail");
  if (!box || !state.selected) return;
  let d;
  try {
    d = await api(`/alerts/${state.selected}`);
  } catch (err) {
    box.replaceChildren(h("p", { class: "error", text: err.message }));
    return;
  }
  const a = d.alert;
  const msg = getLang() === "zh-CN" ? a.message["zh-CN"] : a.message.en;
  box.replaceChildren(
    h("div", { class: `detail-head sev-${a.severity}${isFire(a) ? " fire" : ""}` }, h("span", { class: `chip sev-${a.severity}`, text: t(`severity_${a.severity}`) }), stateBadge(a), h("h2", { text: `#${a.id} ${a.rule_id}` })),
    h("p", { class: "detail-msg", text: msg }),
    h(
      "dl",
      { class: "facts" },
      h("dt", { text: t("unit") }),
      h("dd", {}, can("units:read") ? h("a", { href: `#/unit/${encodeURIComponent(a.unit_id)}`, text: `${a.unit_name} (${a.unit_id})` }) : `${a.unit_name} (${a.unit_id})`),
      h("dt", { text: t("device") }),
      h("dd", { text: `${a.device_id} · ${t(`type_${a.device_type}`)}` }),
      h("dt", { text: t("opened") }),
      h("dd", { text: absTime(a.opened_at) }),
      a.metric ? h("dt", { text: t("value") }) : null,
      a.metric ? h("dd", { text: `${fmtValue(a.value)} (${t("threshold")} ${fmtValue(a.threshold)})` }) : null,
      h("dt", { text: t("count") }),
      h("dd", { text: String(a.count) }),
      a.verification ? h("dt", { text: t("verification") }) : null,
      a.verification ? h("dd", { text: t(a.verification) + (a.false_alarm_cause ? ` · ${t(`cause_${a.false_alarm_cause}`)}` : "") }) : null,
      a.silenced ? h("dt", { text: t("silence") }) : null,
      a.silenced ? h("dd", { class: "silence-fact" }, silenceText(a)) : null,
    ),
    actionButtons(a),
    h("h3", { text: t("history") }),
    h(
      "ol",
      { class: "history" },
      d.history.map((e) => h("li", { "data-kind": e.kind }, h("time", { datetime: e.at, text: absTime(e.at) }), h("strong", { text: t(`kind_${e.kind}`) }), h("span", { text: e.actor }), e.comment ? h("span", { class: "muted", text: e.comment }) : null)),
    ),
    h("h3", { text: t("notifications") }),
    d.notifications.length
      ? h(
          "table",
          { class: "grid small" },
          h("tbody", {}, d.notifications.map((n) => h("tr", {}, h("td", { text: n.channel }), h("td", { text: n.contact_name || n.receiver }), h("td", { text: n.kind }), h("td", { class: `nstate ${n.state}`, text: n.state }), h("td", { text: n.sent_at ? absTime(n.sent_at) : n.last_error || "" })))),
        )
      : h("p", { class: "muted", text: t("no_notifications") }),
  );
}
