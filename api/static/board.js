// The alert board: counters by severity, the open-alert list and its filters, the selected
// alert's detail, the actions (acknowledge, resolve, close with its dialog), keeping the open
// alerts up to date, and the "silenced" mark on alerts.

import { api } from "./api.js";
import { renderBanners } from "./banners.js";
import { actorName, causeName, getLang, historyComment, metricName, ruleName, t } from "./i18n.js";
import { errorText, nstateCell, resendButton, retriedLine } from "./notifications.js";
import { updateAlarm } from "./sound.js";
import { can, canAct, currentRoute, renderView, state } from "./state.js";
import { $, absTime, detectorText, fireCountsByUnit, fmtValue, h, icon, isFire, SEVERITIES, sortAlerts, timeEl, toast } from "./util.js";

// alerts/actions.py FALSE_ALARM_CAUSES, in the order the close dialog offers them.
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
  if (!canAct() || a.state === "closed") return null;
  const buttons = [];
  if (!a.acknowledged_at && (a.state === "firing" || a.state === "resolved")) {
    buttons.push(h("button", { type: "button", class: "act ack primary", "data-action": "ack", text: t("ack"), onclick: (e) => doAction(e, a, "ack") }));
  }
  if (a.state === "firing" || a.state === "acknowledged") {
    buttons.push(h("button", { type: "button", class: "act resolve", "data-action": "resolve", text: t("resolve"), onclick: (e) => doAction(e, a, "resolve") }));
  }
  const unverified = isFire(a) && !a.verification;
  if (unverified) {
    buttons.push(
      h("button", {
        type: "button",
        class: "act verify-fire primary",
        "data-action": "verify",
        text: t("verify"),
        onclick: (e) => {
          e.stopPropagation();
          openCloseDialog(a, "verify");
        },
      }),
    );
  }
  buttons.push(
    h("button", {
      type: "button",
      class: `act close${unverified ? " verify" : ""}`,
      "data-action": "close",
      text: unverified ? t("verify_close") : t("close"),
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
      h("span", { class: "rule", title: a.rule_id, text: ruleName(a.rule_id) }),
      a.count > 1 ? h("span", { class: "repeat", title: t("count"), text: `×${a.count}` }) : null,
      h("span", { class: "grow" }),
      timeEl(a.opened_at),
    ),
    h("div", { class: "alert-msg", text: msg }),
    whereLine(a),
    h(
      "div",
      { class: "alert-meta" },
      h("a", { href: can("units:read") ? `#/unit/${encodeURIComponent(a.unit_id)}` : null, onclick: (e) => e.stopPropagation(), text: a.unit_name }),
      h("span", { text: a.device_id }),
      a.district ? h("span", { text: a.district }) : null,
      a.metric && a.value !== null ? h("span", { class: "value", text: `${metricName(a.metric)} ${fmtValue(a.value)}${a.threshold !== null ? ` / ${fmtValue(a.threshold)}` : ""}` }) : null,
    ),
    actionButtons(a),
  );
}

// The detector and where it is: a fire panel's point (its text, loop and point), the device's
// place in the unit, and the unit's address.
function whereLine(a) {
  const detector = detectorText(a);
  if (!detector && !a.device_location && !a.unit_address) return null;
  return h(
    "div",
    { class: "alert-where" },
    detector ? h("span", { class: "detector", text: detector }) : null,
    a.device_location ? h("span", { class: "location", text: a.device_location }) : null,
    a.unit_address ? h("span", { class: "address muted", text: a.unit_address }) : null,
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

// A false alarm is closed only with a cause the operator picked: no cause is preselected, and
// Confirm stays disabled until the choice is complete (a fire alarm: confirmed or false alarm).
// The same dialog verifies without closing (action "verify"); an alert verified already is
// closed without choosing again.
function openCloseDialog(a, action = "close") {
  const dialog = $("#close-dialog");
  const verifying = action === "verify";
  const fire = verifying || (isFire(a) && !a.verification);
  const causeSelect = h(
    "select",
    { id: "close-cause", name: "cause" },
    h("option", { value: "", text: t("choose_cause"), selected: true, disabled: true }),
    CAUSES.map((c) => h("option", { value: c, text: causeName(c) })),
  );
  const causeRow = h("label", { class: "field cause-row", hidden: true }, h("span", { text: t("cause") }), causeSelect);
  const options = a.verification && !verifying ? [""] : fire ? ["confirmed_fire", "false_alarm"] : ["", "confirmed_fire", "false_alarm"];
  const confirm = h("button", { type: "submit", class: "primary", id: "close-confirm", text: t("confirm"), disabled: true });
  const picked = () => dialog.querySelector("input[name=verification]:checked");
  const check = () => {
    const p = picked();
    causeRow.hidden = !p || p.value !== "false_alarm";
    confirm.disabled = !p || (p.value === "false_alarm" && !causeSelect.value);
  };
  causeSelect.addEventListener("change", check);
  const radios = options.map((v, i) =>
    h(
      "label",
      { class: "radio" },
      h("input", { type: "radio", name: "verification", value: v, checked: !fire && i === 0, required: fire, onchange: check }),
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
        check();
        if (confirm.disabled) return;
        const verification = picked().value;
        const body = { comment: comment.value };
        if (verification) body.verification = verification;
        if (verification === "false_alarm") body.cause = causeSelect.value;
        if (await doAction(null, a, action, body)) dialog.close();
      },
    },
    h("h2", { text: `${verifying ? t("verify_title") : t("close_title")} #${a.id}` }),
    h("p", { class: "muted", text: [a.unit_name, a.device_id, ruleName(a.rule_id), detectorText(a)].filter(Boolean).join(" · ") }),
    verifying ? h("p", { class: "warn", text: t("verify_hint") }) : fire ? h("p", { class: "warn", text: `${t("fire_must_verify")} ${t("choose_verification")}` }) : null,
    h("fieldset", { hidden: options.length === 1 }, h("legend", { text: t("verification") }), radios),
    causeRow,
    h("label", { class: "field" }, h("span", { text: t("comment") }), comment),
    h("div", { class: "row end" }, h("button", { type: "button", class: "ghost", text: t("cancel"), onclick: () => dialog.close() }), confirm),
  );
  dialog.replaceChildren(form);
  check();
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
  renderBanners();
  if (route === "unit" && currentRoute().arg === a.unit_id) scheduleRefresh();
  if (route === "map" || route === "units") scheduleRefresh();
}

let refreshTimer = null;
function scheduleRefresh() {
  const view = currentRoute().view;
  clearTimeout(refreshTimer);
  // Only the view that asked is refreshed: an operator who opened an alert from the fire
  // banner meanwhile saw its detail blank out to "Select an alert" for a moment.
  refreshTimer = setTimeout(() => {
    if (currentRoute().view === view) renderView();
  }, 800);
}

export async function loadOpenAlerts() {
  await loadSilences().catch(() => {});
  const page = await api("/alerts?state=open&limit=1000");
  state.alerts = new Map(page.items.map((a) => [a.id, a]));
  renderCounters();
  updateAlarm();
  renderBanners();
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
      (!text || [a.unit_name, a.unit_id, a.device_id, a.rule_id, ruleName(a.rule_id), a.district, a.point_text, a.device_location].some((f) => (f || "").toLowerCase().includes(text))),
  );
  list.replaceChildren(...(items.length ? groupFires(items) : [h("li", { class: "empty", text: t("no_alerts") })]));
  const sel = $("#severity-filter");
  if (sel) sel.value = state.filter.severity;
}

// Each detector of a fire panel is its own alert: a unit with several of them alarming is
// shown as one group, headed "N detectors alarming", where its first alarm would be.
function groupFires(items) {
  const counts = fireCountsByUnit(state.alerts.values());
  const groups = new Map();
  const out = [];
  for (const a of items) {
    if (!isFire(a) || (counts.get(a.unit_id) || 0) < 2) {
      out.push(alertItem(a));
      continue;
    }
    let g = groups.get(a.unit_id);
    if (!g) {
      const inner = h("ul", { class: "alerts" });
      g = { inner };
      groups.set(a.unit_id, g);
      out.push(
        h(
          "li",
          { class: "fire-group", "data-unit": a.unit_id, "data-count": counts.get(a.unit_id) },
          h("div", { class: "fire-group-head" }, icon("flame"), h("strong", { text: a.unit_name }), h("span", { class: "fire-count", text: t("detectors_alarming", { n: counts.get(a.unit_id) }) }), a.unit_address ? h("span", { class: "muted", text: a.unit_address }) : null),
          inner,
        ),
      );
    }
    g.inner.appendChild(alertItem(a));
  }
  return out;
}

function selectAlert(id) {
  state.selected = id;
  for (const li of document.querySelectorAll("#alert-list li.alert")) li.classList.toggle("selected", Number(li.dataset.id) === id);
  refreshDetail();
}

// The people to call about the unit: tap-to-call links for the roles that may see numbers.
export function contactList(contacts) {
  if (!contacts.length) return h("p", { class: "muted", text: t("no_contacts") });
  const dial = can("contacts:read");
  return h(
    "ul",
    { class: "contacts" },
    contacts.map((c) =>
      h(
        "li",
        { class: "contact", "data-role": c.role },
        h("strong", { text: c.name }),
        h("span", { class: "muted", text: t(`contact_role_${c.role}`) + (c.district_wide ? ` · ${t("district_wide")}` : "") }),
        dial && !c.masked && c.phone ? h("a", { class: "tel", href: `tel:${c.phone.replace(/[^+0-9]/g, "")}`, text: `${t("call")} ${c.phone}` }) : null,
      ),
    ),
  );
}

function historyItem(e) {
  const comment = historyComment(e.kind, e.comment, e.actor);
  return h("li", { "data-kind": e.kind }, h("time", { datetime: e.at, text: absTime(e.at) }), h("strong", { text: t(`kind_${e.kind}`) }), h("span", { class: "actor", text: actorName(e.actor) }), comment ? h("span", { class: "muted", text: comment }) : null);
}

function fact(label, value) {
  if (value === null || value === undefined || value === "") return [];
  return [h("dt", { text: label }), typeof value === "string" ? h("dd", { text: value }) : h("dd", {}, value)];
}

// One notification of the alert: to whom, how, what became of it, and (given up or cancelled,
// for a token that may act) a button that sends it again. Any alert's, closed ones too: the
// server allows it, and an operator may need a "cleared" notice to go out after all.
function notificationRow(n) {
  return h(
    "tr",
    { "data-id": n.id, "data-state": n.state },
    h("td", { text: t(`channel_${n.channel}`) }),
    h("td", { text: n.contact_name || n.receiver }),
    h("td", { text: t(`nkind_${n.kind}`) }),
    nstateCell(n),
    h("td", {}, n.sent_at ? absTime(n.sent_at) : errorText(n), retriedLine(n)),
    h("td", {}, resendButton(n, () => refreshDetail())),
  );
}

// The alert's latest forwarding to the 119 command centre: when 119 took it, or where it is.
function forwardFact(notifications) {
  const f = notifications.filter((n) => n.channel === "fire_119").pop();
  if (!f) return [];
  const sent = f.state === "sent" || f.state === "delivered";
  const text = sent ? t("fire_119_sent", { at: absTime(f.sent_at) }) : t("fire_119_waiting", { state: t(`nstate_${f.state}`) });
  return [h("dt", { text: t("fire_119") }), h("dd", { class: `fire-119 ${sent ? "sent" : "waiting"}`, "data-state": f.state, text })];
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
  const unitText = `${a.unit_name} (${a.unit_id})`;
  // Only nodes: replaceChildren would show a missing part (a closed alert has no actions) as
  // the text "null".
  const parts = [
    h("div", { class: `detail-head sev-${a.severity}${isFire(a) ? " fire" : ""}`, "data-id": a.id }, h("span", { class: `chip sev-${a.severity}`, text: t(`severity_${a.severity}`) }), stateBadge(a), silencedTag(a), h("h2", { text: `#${a.id} ${ruleName(a.rule_id)}` })),
    h("p", { class: "detail-msg", text: msg }),
    h(
      "dl",
      { class: "facts" },
      fact(t("unit"), can("units:read") ? h("a", { href: `#/unit/${encodeURIComponent(a.unit_id)}`, text: unitText }) : unitText),
      fact(t("address"), a.unit_address),
      fact(t("detector"), detectorText(a)),
      fact(t("location"), a.device_location),
      fact(t("device"), `${a.device_id} · ${t(`type_${a.device_type}`)}`),
      fact(t("rule"), `${ruleName(a.rule_id)} (${a.rule_id})`),
      fact(t("opened"), absTime(a.opened_at)),
      a.metric ? fact(t("value"), `${metricName(a.metric)} ${fmtValue(a.value)} (${t("threshold")} ${fmtValue(a.threshold)})`) : [],
      fact(t("count"), String(a.count)),
      a.closed_at ? fact(t("closed_at"), absTime(a.closed_at)) : [],
      a.verification ? fact(t("verification"), t(a.verification) + (a.false_alarm_cause ? ` · ${causeName(a.false_alarm_cause)}` : "") + (a.verified_by ? ` · ${t("verified_by", { who: actorName(a.verified_by), at: absTime(a.verified_at) })}` : "")) : [],
      forwardFact(d.notifications),
      a.silenced ? [h("dt", { text: t("silence") }), h("dd", { class: "silence-fact" }, silenceText(a))] : [],
    ),
    actionButtons(a),
    h("h3", { text: t("contacts") }),
    contactList(d.contacts || []),
    h("h3", { text: t("history") }),
    h("ol", { class: "history" }, d.history.map(historyItem)),
    h("h3", { text: t("notifications") }),
    d.notifications.length ? h("table", { class: "grid small", id: "detail-notifications" }, h("tbody", {}, d.notifications.map(notificationRow))) : h("p", { class: "muted", text: t("no_notifications") }),
  ];
  box.replaceChildren(...parts.filter(Boolean));
}
