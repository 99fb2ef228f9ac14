// The control-room console: log in with a token, live alert board over SSE, unit view with
// charts, offline devices, district map, telemetry explorer and statistics. No build step.

import { districtMap, lineChart } from "./chart.js";
import { getLang, preferredLang, setLang, t } from "./i18n.js";

const SEVERITIES = ["critical", "major", "warning", "info"];
const SEV_RANK = { critical: 0, major: 1, warning: 2, info: 3 };
const PREFERRED_METRICS = ["residual_current_ma", "level_m", "pressure_mpa", "temp_c_1", "voltage_v_a", "battery_pct"];
const CAUSES = ["test", "dust_steam", "equipment_fault", "malicious", "unknown"];

const state = {
  token: null,
  me: null,
  alerts: new Map(), // open alerts by id
  selected: null,
  lastEventId: null,
  streamAbort: null,
  conn: "off",
  muted: localStorage.getItem("fs.muted") === "1",
  filter: { text: "", severity: "" },
  showUnknown: false,
  telemetryForm: null,
  statsForm: { group: "unit", days: 30 },
  silences: new Map(), // silences by id (newest 200), for the "silenced" mark on alerts
  silenceOf: new Map(), // alert id -> silence id
  showEndedSilences: false,
};

// ---------- small DOM helpers ----------

function h(tag, attrs = {}, ...children) {
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

const $ = (sel) => document.querySelector(sel);

function icon(name, cls = "icon-img") {
  return h("img", { src: `/static/icons/${name}.svg`, alt: "", class: cls, "aria-hidden": "true" });
}

function toast(message, kind = "info") {
  const box = $("#toast");
  const item = h("div", { class: `toast ${kind}`, text: message });
  box.appendChild(item);
  setTimeout(() => item.remove(), 6000);
}

function relTime(iso) {
  if (!iso) return t("never");
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return t("ago_s", { n: s });
  if (s < 3600) return t("ago_m", { n: Math.round(s / 60) });
  if (s < 86400) return t("ago_h", { n: Math.round(s / 3600) });
  return t("ago_d", { n: Math.round(s / 86400) });
}

function absTime(iso) {
  return iso ? new Date(iso).toLocaleString(getLang()) : "";
}

function timeEl(iso) {
  return h("time", { datetime: iso || "", "data-rel": iso || "", title: absTime(iso), text: relTime(iso) });
}

function fmtValue(v) {
  if (v === null || v === undefined) return "–";
  return Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(4)).toString();
}

function can(permission) {
  return Boolean(state.me && state.me.permissions.includes(permission));
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, t("cannot_reach"));
  }
  if (res.status === 401) {
    logout(t("bad_token"));
    throw new ApiError(401, t("bad_token"));
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, data.message || res.statusText);
  return data;
}

// ---------- log in / out ----------

async function login(token) {
  state.token = token;
  let me;
  try {
    me = await api("/me");
  } catch (err) {
    state.token = null;
    showLogin(err.status === 401 ? t("bad_token") : err.message);
    return;
  }
  state.me = me;
  sessionStorage.setItem("fs.token", token);
  $("#login").hidden = true;
  $("#login").replaceChildren();
  $("#app").hidden = false;
  if (!location.hash.startsWith("#/")) history.replaceState(null, "", "#/board");
  renderChrome();
  startStream();
  render();
}

function logout(message) {
  sessionStorage.removeItem("fs.token");
  if (state.streamAbort) state.streamAbort.abort();
  state.token = null;
  state.me = null;
  state.alerts.clear();
  state.lastEventId = null;
  updateAlarm();
  showLogin(message);
}

function showLogin(message) {
  $("#app").hidden = true;
  const root = $("#login");
  root.hidden = false;
  const input = h("input", { id: "token-input", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  root.replaceChildren(
    h(
      "form",
      {
        class: "login-card",
        onsubmit: (e) => {
          e.preventDefault();
          unlockAudio();
          login(input.value.trim());
        },
      },
      h("div", { class: "brand big" }, icon("flame", "logo"), h("span", { text: t("brand") })),
      h("p", { class: "muted", text: t("brand_sub") }),
      h("label", { for: "token-input", text: t("token") }),
      input,
      h("p", { class: "hint", text: t("token_hint") }),
      message ? h("p", { class: "error", role: "alert", text: message }) : null,
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary", id: "sign-in", text: t("sign_in") }), langButton()),
    ),
  );
  input.focus();
}

// ---------- chrome: top bar ----------

const VIEWS = [
  { id: "board", label: "nav_board", perm: "alerts:read" },
  { id: "units", label: "nav_units", perm: "units:read" },
  { id: "offline", label: "nav_offline", perm: "units:read" },
  { id: "map", label: "nav_map", perm: "units:read" },
  { id: "telemetry", label: "nav_telemetry", perm: "telemetry:read" },
  { id: "stats", label: "nav_stats", perm: "stats:read" },
  { id: "silences", label: "nav_silences", perm: "alerts:act" },
];

function langButton() {
  return h("button", {
    type: "button",
    class: "ghost",
    id: "lang",
    title: "中文 / English",
    text: getLang() === "zh-CN" ? "EN" : "中文",
    onclick: () => {
      setLang(getLang() === "zh-CN" ? "en" : "zh-CN");
      localStorage.setItem("fs.lang", getLang());
      if (state.me) {
        renderChrome();
        render();
      } else showLogin();
    },
  });
}

function renderChrome() {
  const me = state.me;
  const route = currentRoute();
  const nav = VIEWS.filter((v) => can(v.perm)).map((v) =>
    h("a", { href: `#/${v.id}`, class: route.view === v.id || (v.id === "units" && route.view === "unit") ? "active" : "", "data-view": v.id, text: t(v.label) }),
  );
  const scope = me.units ? me.units.join(", ") : t("scope_all");
  $("#topbar").replaceChildren(
    h("div", { class: "brand" }, icon("flame", "logo"), h("span", { text: t("brand") }), h("span", { class: "brand-sub", text: t("brand_sub") })),
    h("nav", { id: "nav", "aria-label": "views" }, nav),
    h("div", { id: "counters", class: "counters", "aria-live": "polite" }),
    h(
      "div",
      { class: "tools" },
      h("span", { id: "conn", class: `conn ${state.conn}`, text: state.conn === "live" ? t("live") : t("reconnecting") }),
      h("button", {
        type: "button",
        id: "mute",
        class: "ghost icon",
        "aria-pressed": String(state.muted),
        title: state.muted ? t("unmute") : t("mute"),
        "aria-label": state.muted ? t("unmute") : t("mute"),
        onclick: () => {
          unlockAudio();
          state.muted = !state.muted;
          localStorage.setItem("fs.muted", state.muted ? "1" : "0");
          renderChrome();
          updateAlarm();
        },
      }, icon(state.muted ? "bell-off" : "bell")),
      langButton(),
      h("span", { class: "who", title: scope }, `${me.name} · ${t(`role_${me.role}`)}`, can("alerts:act") ? "" : ` (${t("read_only")})`, me.units ? ` · ${scope}` : ""),
      h("button", { type: "button", class: "ghost", id: "logout", text: t("sign_out"), onclick: () => logout() }),
    ),
  );
  $("#sound-hint span").textContent = t("sound_blocked");
  renderCounters();
}

function renderCounters() {
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

function setConn(conn) {
  state.conn = conn;
  const el = $("#conn");
  if (el) {
    el.className = `conn ${conn}`;
    el.textContent = conn === "live" ? t("live") : t("reconnecting");
  }
}

// ---------- routing ----------

function currentRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  return { view: parts[0] || "board", arg: parts[1] ? decodeURIComponent(parts[1]) : null };
}

function render() {
  if (!state.me) return;
  const route = currentRoute();
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === route.view || (a.dataset.view === "units" && route.view === "unit"));
  }
  const view = VIEWS.find((v) => v.id === route.view) || (route.view === "unit" ? { perm: "units:read" } : null);
  const main = $("#view");
  main.dataset.view = route.view;
  if (!view || !can(view.perm)) {
    main.replaceChildren(h("p", { class: "empty", text: t("forbidden_view") }));
    return;
  }
  ({
    board: renderBoard,
    units: renderUnits,
    unit: () => renderUnit(route.arg),
    offline: renderOffline,
    map: renderMap,
    telemetry: renderTelemetry,
    stats: renderStats,
    silences: renderSilences,
  })[route.view]();
}

// ---------- alerts: shared rendering and actions ----------

function isFire(a) {
  return a.needs_verification;
}

function sortAlerts(list) {
  return list.sort((x, y) => SEV_RANK[x.severity] - SEV_RANK[y.severity] || Date.parse(y.opened_at) - Date.parse(x.opened_at) || y.id - x.id);
}

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

function alertItem(a) {
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

function upsertAlert(a) {
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
  refreshTimer = setTimeout(() => render(), 800);
}

async function loadOpenAlerts() {
  await loadSilences().catch(() => {});
  const page = await api("/alerts?state=open&limit=1000");
  state.alerts = new Map(page.items.map((a) => [a.id, a]));
  renderCounters();
  updateAlarm();
  if (currentRoute().view === "board") renderBoardList();
}

// ---------- silences: the mark on silenced alerts, and the Silences view ----------

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

async function renderSilences() {
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

// ---------- the board ----------

function renderBoard() {
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

async function refreshDetail() {
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

// ---------- units ----------

function statusDot(status) {
  return h("span", { class: `dot ${status}`, title: t(status), "aria-label": t(status) });
}

async function renderUnits() {
  const main = $("#view");
  const data = await api("/units");
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("h1", { text: t("units") }),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "grid", id: "units-table" },
          h("thead", {}, h("tr", {}, [t("unit"), t("district"), t("devices"), t("online"), t("offline"), t("unknown"), t("open_alerts"), t("worst")].map((x) => h("th", { text: x })))),
          h(
            "tbody",
            {},
            data.items.map((u) =>
              h(
                "tr",
                { "data-unit": u.id, class: "clickable", onclick: () => (location.hash = `#/unit/${encodeURIComponent(u.id)}`) },
                h("td", {}, h("a", { href: `#/unit/${encodeURIComponent(u.id)}`, text: u.name }), h("div", { class: "muted small", text: u.id })),
                h("td", { text: u.district }),
                h("td", { text: u.devices }),
                h("td", { text: u.online }),
                h("td", { class: u.offline ? "bad" : "", text: u.offline }),
                h("td", { text: u.unknown }),
                h("td", { text: u.open_alerts }),
                h("td", {}, u.worst_severity ? h("span", { class: `chip sev-${u.worst_severity}`, text: t(`severity_${u.worst_severity}`) }) : h("span", { class: "chip ok", text: t("ok") })),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

async function renderUnit(unitId) {
  const main = $("#view");
  let d;
  try {
    d = await api(`/units/${encodeURIComponent(unitId)}`);
  } catch (err) {
    main.replaceChildren(h("p", { class: "error", text: err.message }));
    return;
  }
  const u = d.unit;
  const alerts = sortAlerts(d.open_alerts);
  for (const a of alerts) state.alerts.set(a.id, a);
  const cards = d.devices.map((dev) => deviceCard(dev, d.thresholds[dev.id] || {}));
  main.replaceChildren(
    h(
      "section",
      { class: "unit-view" },
      h(
        "div",
        { class: "unit-head" },
        h("a", { href: "#/units", class: "back", text: `← ${t("back")}` }),
        h("h1", { text: u.name }),
        h("span", { class: "muted", text: [u.id, u.district, u.address].filter(Boolean).join(" · ") }),
        u.worst_severity ? h("span", { class: `chip sev-${u.worst_severity}`, text: t(`severity_${u.worst_severity}`) }) : h("span", { class: "chip ok", text: t("ok") }),
      ),
      h("div", { class: "unit-body" }, h("div", { class: "unit-alerts" }, h("h2", { text: `${t("open_alerts")} (${alerts.length})` }), h("ul", { class: "alerts", id: "unit-alerts" }, alerts.length ? alerts.map(alertItem) : h("li", { class: "empty", text: t("no_alerts") }))), h("div", { class: "unit-devices" }, h("h2", { text: t("devices") }), h("p", { class: "muted small", text: t("recent_telemetry") }), h("div", { class: "device-grid" }, cards))),
    ),
  );
}

function deviceCard(dev, thresholds) {
  const chartBox = h("div", { class: "chart-box", "data-device": dev.id });
  const withLevels = dev.metrics.filter((m) => thresholds[m]);
  const metrics = [...new Set([...PREFERRED_METRICS.filter((m) => dev.metrics.includes(m)), ...withLevels, ...dev.metrics])];
  const chips = h("div", { class: "metric-chips" });
  const show = async (metric, fallbacks = []) => {
    for (const c of chips.children) c.classList.toggle("active", c.dataset.metric === metric);
    const drawn = await drawDeviceChart(chartBox, dev, metric, thresholds[metric] || []);
    // On first show, move on to a metric that has readings (a panel reports only rssi_dbm).
    if (!drawn && fallbacks.length) show(fallbacks[0], fallbacks.slice(1));
  };
  for (const m of metrics) chips.appendChild(h("button", { type: "button", class: "chip-btn", "data-metric": m, text: m, onclick: () => show(m) }));
  const card = h(
    "article",
    { class: `device-card ${dev.status}`, "data-device": dev.id },
    h("header", {}, statusDot(dev.status), h("strong", { text: dev.id }), h("span", { class: "muted", text: t(`type_${dev.type}`) })),
    h("div", { class: "muted small" }, `${t("status")}: ${t(dev.status)} · ${t("last_seen")}: `, timeEl(dev.last_seen)),
    metrics.length ? chips : null,
    chartBox,
  );
  if (metrics.length) show(metrics[0], metrics.slice(1, 4));
  else chartBox.replaceChildren(h("p", { class: "muted", text: t("no_metrics") }));
  return card;
}

async function fetchSeries(dev, metric, minutes, bucket) {
  const to = new Date();
  const from = new Date(to.getTime() - minutes * 60e3);
  return api(`/telemetry?device=${encodeURIComponent(dev.id)}&metric=${metric}&bucket=${bucket}&from=${from.toISOString()}&to=${to.toISOString()}`);
}

// The last hour per minute; when that holds only a few points (a device just started), the
// last 15 minutes of raw readings, from the first one on.
async function drawDeviceChart(box, dev, metric, thresholds) {
  try {
    let data = await fetchSeries(dev, metric, 60, "1m");
    let pts = data.series.flatMap((s) => s.points);
    let from = data.from;
    if (pts.length && pts.length < 10) {
      data = await fetchSeries(dev, metric, 15, "raw");
      pts = data.series.flatMap((s) => s.points);
      if (pts.length) from = new Date(Date.parse(pts[0].t) - 10e3).toISOString();
    }
    if (!pts.length) {
      box.replaceChildren(h("p", { class: "muted no-data", text: `${metric}: ${t("no_data")}` }));
      return false;
    }
    lineChart(box, data.series, { thresholds, from, to: data.to, label: `${dev.id} ${metric} (${data.unit})` });
    box.appendChild(h("div", { class: "chart-caption", text: `${metric} (${data.unit}) · ${data.bucket === "raw" ? t("raw") : data.bucket}` }));
    return true;
  } catch (err) {
    box.replaceChildren(h("p", { class: "error", text: err.message }));
    return true;
  }
}

// ---------- offline devices ----------

async function renderOffline() {
  const main = $("#view");
  const lists = await Promise.all([api("/devices?status=offline"), state.showUnknown ? api("/devices?status=unknown") : Promise.resolve({ items: [] })]);
  const devices = lists.flatMap((l) => l.items);
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("div", { class: "toolbar" }, h("h1", { text: `${t("offline_devices")} (${devices.length})` }), h("label", { class: "check" }, h("input", { type: "checkbox", id: "show-unknown", checked: state.showUnknown, onchange: (e) => { state.showUnknown = e.target.checked; renderOffline(); } }), h("span", { text: t("show_unknown") }))),
      devices.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "grid", id: "offline-table" },
              h("thead", {}, h("tr", {}, [t("device"), t("unit"), t("type"), t("status"), t("last_seen")].map((x) => h("th", { text: x })))),
              h("tbody", {}, devices.map((d) => h("tr", { "data-device": d.id }, h("td", { text: d.id }), h("td", {}, h("a", { href: `#/unit/${encodeURIComponent(d.unit_id)}`, text: d.unit_name })), h("td", { text: t(`type_${d.type}`) }), h("td", {}, statusDot(d.status), " ", t(d.status)), h("td", {}, timeEl(d.last_seen))))),
            ),
          )
        : h("p", { class: "empty", text: t("no_offline") }),
    ),
  );
}

// ---------- district map ----------

async function renderMap() {
  const main = $("#view");
  const data = await api("/units");
  const mapBox = h("div", { class: "map-box", id: "map" });
  const districts = new Map();
  for (const u of data.items) {
    const d = districts.get(u.district) || { units: 0, alerts: 0, worst: null };
    d.units += 1;
    d.alerts += u.open_alerts;
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
          h("thead", {}, h("tr", {}, [t("district"), t("units"), t("open_alerts"), t("worst")].map((x) => h("th", { text: x })))),
          h("tbody", {}, [...districts].map(([name, d]) => h("tr", {}, h("td", { text: name || "—" }), h("td", { text: d.units }), h("td", { text: d.alerts }), h("td", {}, d.worst ? h("span", { class: `chip sev-${d.worst}`, text: t(`severity_${d.worst}`) }) : h("span", { class: "chip ok", text: t("ok") }))))),
        ),
        unplaced.length ? h("div", {}, h("h3", { text: t("no_location") }), h("ul", {}, unplaced.map((u) => h("li", {}, h("a", { href: `#/unit/${encodeURIComponent(u.id)}`, text: u.name }))))) : null,
      ),
    ),
  );
  districtMap(mapBox, data.items, { label: t("map_title") });
}

function legend() {
  return h("div", { class: "legend" }, [...SEVERITIES, "none"].map((s) => h("span", { class: "legend-item" }, h("span", { class: `swatch sev-${s}` }), s === "none" ? t("ok") : t(`severity_${s}`))));
}

// ---------- telemetry explorer ----------

const METRICS = ["residual_current_ma", "temp_c_1", "temp_c_2", "temp_c_3", "temp_c_4", "voltage_v_a", "voltage_v_b", "voltage_v_c", "current_a_a", "current_a_b", "current_a_c", "level_m", "pressure_mpa", "battery_pct", "rssi_dbm"];
const RANGES = [
  { hours: 1, bucket: "1m" },
  { hours: 6, bucket: "1m" },
  { hours: 24, bucket: "1m" },
  { hours: 24 * 7, bucket: "1h" },
  { hours: 24 * 30, bucket: "1d" },
];

function telemetryQuery(f) {
  const to = new Date();
  const from = new Date(to.getTime() - f.hours * 3600e3);
  const key = /^unit:/.test(f.source) ? "unit" : "device";
  const id = f.source.replace(/^(unit|device):/, "");
  return { key, id, from, to };
}

function renderTelemetry() {
  const main = $("#view");
  const f = state.telemetryForm || { source: "", metric: "residual_current_ma", hours: 24, bucket: "1m" };
  state.telemetryForm = f;
  const chart = h("div", { class: "chart-box large", id: "telemetry-chart" });
  const source = h("input", { id: "tm-source", required: true, value: f.source, placeholder: "u1-em  /  unit:u1", "aria-label": t("device_or_unit") });
  const metric = h("select", { id: "tm-metric" }, METRICS.map((m) => h("option", { value: m, selected: m === f.metric, text: m })));
  const range = h("select", { id: "tm-range" }, RANGES.map((r) => h("option", { value: r.hours, selected: r.hours === f.hours, text: r.hours < 48 ? t("last_hours", { n: r.hours }) : t("last_days", { n: r.hours / 24 }) })));
  const bucket = h("select", { id: "tm-bucket" }, ["raw", "1m", "1h", "1d"].map((b) => h("option", { value: b, selected: b === f.bucket, text: b === "raw" ? t("raw") : b })));
  const read = () => Object.assign(f, { source: source.value.trim(), metric: metric.value, hours: Number(range.value), bucket: bucket.value });
  const show = async () => {
    read();
    const q = telemetryQuery(f);
    try {
      const data = await api(`/telemetry?${q.key}=${encodeURIComponent(q.id)}&metric=${f.metric}&bucket=${f.bucket}&from=${q.from.toISOString()}&to=${q.to.toISOString()}`);
      if (!data.series.some((s) => s.points.length)) chart.replaceChildren(h("p", { class: "muted", text: t("no_data") }));
      else lineChart(chart, data.series, { from: data.from, to: data.to, width: 960, height: 320, label: `${q.id} ${f.metric}` });
    } catch (err) {
      chart.replaceChildren(h("p", { class: "error", text: err.message }));
    }
  };
  const download = async () => {
    read();
    const q = telemetryQuery(f);
    const res = await fetch(`/api/v1/telemetry.csv?${q.key}=${encodeURIComponent(q.id)}&metric=${f.metric}&from=${q.from.toISOString()}&to=${q.to.toISOString()}`, { headers: { Authorization: `Bearer ${state.token}` } });
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      toast(data.message || res.statusText, "error");
      return;
    }
    const url = URL.createObjectURL(await res.blob());
    const a = h("a", { href: url, download: `telemetry-${q.id}-${f.metric}.csv` });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  };
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("h1", { text: t("nav_telemetry") }),
      h(
        "form",
        {
          class: "toolbar wrap",
          onsubmit: (e) => {
            e.preventDefault();
            show();
          },
        },
        h("label", { class: "field" }, h("span", { text: t("device_or_unit") }), source),
        h("label", { class: "field" }, h("span", { text: t("metric") }), metric),
        h("label", { class: "field" }, h("span", { text: t("range") }), range),
        h("label", { class: "field" }, h("span", { text: t("bucket") }), bucket),
        h("button", { type: "submit", class: "primary", text: t("show") }),
        can("telemetry:export") ? h("button", { type: "button", id: "csv", text: t("download_csv"), onclick: download }) : null,
      ),
      chart,
    ),
  );
  if (f.source) show();
}

// ---------- statistics ----------

async function renderStats() {
  const main = $("#view");
  const f = state.statsForm;
  const to = new Date();
  const from = new Date(to.getTime() - f.days * 86400e3);
  const data = await api(`/stats/alerts?group=${f.group}&from=${from.toISOString()}&to=${to.toISOString()}`);
  const group = h("select", { id: "st-group", onchange: (e) => { f.group = e.target.value; renderStats(); } }, ["unit", "district"].map((g) => h("option", { value: g, selected: g === f.group, text: t(g) })));
  const days = h("select", { id: "st-days", onchange: (e) => { f.days = Number(e.target.value); renderStats(); } }, [7, 30, 90, 365].map((n) => h("option", { value: n, selected: n === f.days, text: t("last_days", { n }) })));
  const mtta = (s) => (s === null ? "–" : s < 120 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`);
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("div", { class: "toolbar wrap" }, h("h1", { text: t("stats_title") }), h("label", { class: "field" }, h("span", { text: t("group_by") }), group), h("label", { class: "field" }, h("span", { text: t("range") }), days)),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "grid", id: "stats-table" },
          h("thead", {}, h("tr", {}, [f.group === "unit" ? t("unit") : t("district"), t("alerts"), t("critical"), t("acknowledged"), t("mtta"), t("verified_fire"), t("false_alarms"), t("false_alarm_rate")].map((x) => h("th", { text: x })))),
          h("tbody", {}, data.rows.map((r) => h("tr", {}, h("td", { text: r.name }), h("td", { text: r.alerts }), h("td", { text: r.critical }), h("td", { text: r.acknowledged }), h("td", { text: mtta(r.mean_time_to_ack_s) }), h("td", { text: r.fire_alarms_verified }), h("td", { text: r.false_alarms }), h("td", { text: r.false_alarm_rate === null ? "–" : `${(r.false_alarm_rate * 100).toFixed(0)} %` })))),
        ),
      ),
    ),
  );
}

// ---------- live stream (Server-Sent Events over fetch, so that the token goes in a header) ----------

async function startStream() {
  if (state.streamAbort) state.streamAbort.abort();
  const abort = new AbortController();
  state.streamAbort = abort;
  while (!abort.signal.aborted && state.token) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
      if (state.lastEventId !== null) headers["Last-Event-ID"] = String(state.lastEventId);
      const res = await fetch("/api/v1/stream", { headers, signal: abort.signal, cache: "no-store" });
      if (res.status === 401) {
        logout(t("bad_token"));
        return;
      }
      if (!res.ok || !res.body) throw new Error(`stream ${res.status}`);
      await readEvents(res.body, abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return;
    }
    setConn("reconnecting");
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function readEvents(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const ev = { id: null, event: "message", data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "id") ev.id = val;
        else if (field === "event") ev.event = val;
        else if (field === "data") ev.data += val;
      }
      await handleEvent(ev);
    }
  }
}

async function handleEvent(ev) {
  if (ev.event === "ready") {
    const resumed = state.lastEventId !== null;
    state.lastEventId = Number(ev.id);
    setConn("live");
    // First connection (or after a reset): load the board; a resumed stream replayed what it missed.
    if (!resumed) await loadOpenAlerts().catch((err) => toast(err.message, "error"));
  } else if (ev.event === "alert") {
    const data = JSON.parse(ev.data);
    state.lastEventId = Number(ev.id);
    upsertAlert(data.alert);
    if (state.selected === data.alert.id) refreshDetail();
  } else if (ev.event === "reset") {
    state.lastEventId = null;
  }
}

// ---------- the alarm sound (WebAudio, generated; mutable) ----------

let audio = null;
let alarmTimer = null;

function unlockAudio() {
  try {
    if (!audio) audio = new AudioContext();
    if (audio.state === "suspended") audio.resume();
  } catch {
    audio = null;
  }
  document.body.classList.remove("sound-blocked");
}

function siren() {
  if (!audio || state.muted) return;
  if (audio.state !== "running") {
    document.body.classList.add("sound-blocked");
    return;
  }
  const t0 = audio.currentTime + 0.05;
  for (let i = 0; i < 3; i++) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "square";
    osc.frequency.setValueAtTime(960, t0 + i * 0.5);
    osc.frequency.setValueAtTime(720, t0 + i * 0.5 + 0.25);
    gain.gain.setValueAtTime(0.0001, t0 + i * 0.5);
    gain.gain.exponentialRampToValueAtTime(0.15, t0 + i * 0.5 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + i * 0.5 + 0.48);
    osc.connect(gain).connect(audio.destination);
    osc.start(t0 + i * 0.5);
    osc.stop(t0 + i * 0.5 + 0.5);
  }
  document.body.dataset.sirens = String(Number(document.body.dataset.sirens || 0) + 1);
}

// While a fire alarm is firing and nobody has acknowledged it, the page sounds every 6 s.
function updateAlarm(newFire = false) {
  const active = [...state.alerts.values()].some((a) => isFire(a) && a.state === "firing");
  document.body.dataset.alarm = active ? "on" : "off";
  if (active && !state.muted) {
    if (!audio) document.body.classList.add("sound-blocked");
    if (newFire || !alarmTimer) siren();
    if (!alarmTimer) alarmTimer = setInterval(siren, 6000);
  } else if (alarmTimer) {
    clearInterval(alarmTimer);
    alarmTimer = null;
  }
  if (!active || state.muted) document.body.classList.remove("sound-blocked");
}

// ---------- start ----------

function refreshTimes() {
  for (const el of document.querySelectorAll("time[data-rel]")) if (el.dataset.rel) el.textContent = relTime(el.dataset.rel);
}

function start() {
  setLang(preferredLang());
  // Browsers start sound only after a user gesture: the first click anywhere allows it.
  document.addEventListener("click", unlockAudio);
  window.addEventListener("hashchange", () => {
    if (state.me) render();
  });
  setInterval(refreshTimes, 15000);
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    history.replaceState(null, "", `${location.pathname}#/board`);
    login(decodeURIComponent(m[1]));
    return;
  }
  const saved = sessionStorage.getItem("fs.token");
  if (saved) login(saved);
  else showLogin();
}

start();
