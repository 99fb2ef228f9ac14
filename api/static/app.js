// The console's entry point: signing in and out (a wall screen may remember its token), the
// top bar, the banners, routing between the views, the live stream's events, and start-up.
// The control room: live alert board over SSE, unit view with charts and device events,
// offline devices, district map, alert search with full histories, undelivered notifications,
// telemetry explorer, statistics, silences, hazards and the duty log. Native ES modules, no
// build step.

import { api, onUnauthorized, startStream } from "./api.js";
import { onUnmute, renderBanners } from "./banners.js";
import { loadOpenAlerts, refreshDetail, renderBoard, renderCounters, upsertAlert } from "./board.js";
import { isLive, noteStreamDatabase, onHealthChange, startHealth, stopHealth } from "./health.js";
import { renderDuty } from "./duty.js";
import { renderHazards } from "./hazards.js";
import { getLang, preferredLang, setLang, setRuleNames, t } from "./i18n.js";
import { renderMap } from "./map.js";
import { renderNotifications, scheduleNotificationsReload } from "./notifications.js";
import { renderSearch } from "./search.js";
import { renderSilences } from "./silences.js";
import { initAudio, onSoundChange, unlockAudio, updateAlarm } from "./sound.js";
import { can, currentRoute, setViewRenderer, state } from "./state.js";
import { renderStats } from "./stats.js";
import { renderTelemetry } from "./telemetry.js";
import { renderOffline, renderUnit, renderUnits } from "./unit.js";
import { $, h, icon, relTime, toast } from "./util.js";

// ---------- log in / out ----------

// Where a token is kept: the tab's sessionStorage, or, when the operator chose "remember on
// this screen" (a wall display), localStorage, so that a rebooted screen signs in by itself.
const TOKEN_KEY = "fs.token";
const RETRY_MS = 5000;
let retryTimer = null;

function savedToken() {
  return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY);
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
}

async function login(token, remember = null) {
  clearTimeout(retryTimer);
  state.token = token;
  let me;
  try {
    me = await api("/me");
  } catch (err) {
    state.token = null;
    if (err.status === 401) {
      forgetToken();
      showLogin(t("bad_token"));
    } else if (remember === null && savedToken() === token) {
      // A remembered screen whose server is not up yet (a power cut): keep trying.
      showLogin(t("login_retrying", { message: err.message }));
      retryTimer = setTimeout(() => login(token), RETRY_MS);
    } else showLogin(err.message);
    return;
  }
  state.me = me;
  if (remember === true) {
    localStorage.setItem(TOKEN_KEY, token);
    sessionStorage.removeItem(TOKEN_KEY);
  } else if (remember === false) {
    localStorage.removeItem(TOKEN_KEY);
    sessionStorage.setItem(TOKEN_KEY, token);
  }
  $("#login").hidden = true;
  $("#login").replaceChildren();
  $("#app").hidden = false;
  if (!location.hash.startsWith("#/")) history.replaceState(null, "", "#/board");
  initAudio();
  renderChrome();
  startHealth();
  api("/rules")
    .then((data) => {
      setRuleNames(data.items);
      render();
    })
    .catch(() => {});
  startStream(handleEvent, setConn);
  render();
}

function logout(message) {
  clearTimeout(retryTimer);
  forgetToken();
  if (state.streamAbort) state.streamAbort.abort();
  stopHealth();
  state.token = null;
  state.me = null;
  state.alerts.clear();
  state.lastEventId = null;
  state.conn = "off";
  updateAlarm();
  renderBanners();
  showLogin(message);
}

function showLogin(message) {
  $("#app").hidden = true;
  const root = $("#login");
  root.hidden = false;
  const input = h("input", { id: "token-input", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const remember = h("input", { id: "remember-screen", type: "checkbox" });
  root.replaceChildren(
    h(
      "form",
      {
        class: "login-card",
        onsubmit: (e) => {
          e.preventDefault();
          unlockAudio();
          login(input.value.trim(), remember.checked);
        },
      },
      h("div", { class: "brand big" }, icon("flame", "logo"), h("span", { text: t("brand") })),
      h("p", { class: "muted", text: t("brand_sub") }),
      h("label", { for: "token-input", text: t("token") }),
      input,
      h("label", { class: "check" }, remember, h("span", { text: t("remember_screen") })),
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
  // A wall display shows the board only.
  { id: "search", label: "nav_search", perm: "alerts:read", notFor: "display" },
  { id: "notifications", label: "nav_notifications", perm: "alerts:read", notFor: "display" },
  { id: "telemetry", label: "nav_telemetry", perm: "telemetry:read" },
  { id: "stats", label: "nav_stats", perm: "stats:read" },
  { id: "silences", label: "nav_silences", perm: "alerts:act" },
  { id: "hazards", label: "nav_hazards", perm: "hazards:read" },
  { id: "duty", label: "nav_duty", perm: "alerts:act" },
];

function allowed(v) {
  return can(v.perm) && !(v.notFor && state.me && state.me.role === v.notFor);
}

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
  if (!me) return;
  const route = currentRoute();
  const nav = VIEWS.filter(allowed).map((v) =>
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
      h("span", { id: "conn" }),
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
      h("span", { class: "who", title: scope }, `${me.name} · ${t(`role_${me.role}`)}`, can("alerts:act") || can("hazards:act") ? "" : ` (${t("read_only")})`, me.units ? ` · ${scope}` : ""),
      h("button", { type: "button", class: "ghost", id: "logout", text: t("sign_out"), onclick: () => logout() }),
    ),
  );
  renderConn();
  renderCounters();
  renderBanners();
}

// "Live" only while the stream is connected and the database answers; anything else says so.
function renderConn() {
  const el = $("#conn");
  if (!el) return;
  const live = isLive();
  const mark = live ? "live" : state.conn === "live" ? "not-live" : "reconnecting";
  el.className = `conn ${mark}`;
  el.textContent = live ? t("live") : mark === "not-live" ? t("not_live") : t("reconnecting");
}

function setConn(conn) {
  state.conn = conn;
  renderConn();
  renderBanners();
}

// ---------- routing ----------

function viewFailed(main, route, err) {
  // A view that cannot load says so, in place of what it showed before (never a stale page).
  if (currentRoute().view !== route.view || currentRoute().arg !== route.arg) return;
  main.replaceChildren(
    h(
      "div",
      { class: "panel view-error", role: "alert" },
      h("p", { class: "error", text: t("view_failed", { message: err.message || String(err) }) }),
      h("button", { type: "button", class: "primary", id: "view-retry", text: t("retry"), onclick: () => render() }),
    ),
  );
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
  if (!view || !allowed(view)) {
    main.replaceChildren(h("p", { class: "empty", text: t("forbidden_view") }));
    return;
  }
  if (route.view === "board" && route.arg) state.selected = Number(route.arg);
  const done = {
    board: renderBoard,
    units: renderUnits,
    unit: () => renderUnit(route.arg, route.rest[0] === "code" ? route.rest[1] : null),
    offline: renderOffline,
    map: renderMap,
    search: renderSearch,
    notifications: renderNotifications,
    telemetry: renderTelemetry,
    stats: renderStats,
    silences: renderSilences,
    hazards: renderHazards,
    duty: renderDuty,
  }[route.view]();
  if (done && typeof done.catch === "function") done.catch((err) => viewFailed(main, route, err));
}

// ---------- live stream events ----------

async function handleEvent(ev) {
  if (ev.event === "ready") {
    const resumed = state.lastEventId !== null;
    state.lastEventId = Number(ev.id);
    const data = JSON.parse(ev.data || "{}");
    noteStreamDatabase(data.database || "ok");
    setConn("live");
    // First connection (or after a reset): load the board; a resumed stream replayed what it missed.
    if (!resumed) await loadOpenAlerts().catch((err) => toast(err.message, "error"));
  } else if (ev.event === "status") {
    const data = JSON.parse(ev.data || "{}");
    const wasDown = state.health.streamDb === false;
    noteStreamDatabase(data.database);
    // Back after an outage: what the board showed may have changed meanwhile.
    if (wasDown && data.database === "ok") await loadOpenAlerts().catch(() => {});
  } else if (ev.event === "alert") {
    const data = JSON.parse(ev.data);
    state.lastEventId = Number(ev.id);
    upsertAlert(data.alert);
    if (state.selected === data.alert.id) refreshDetail();
    // A resend, an escalation or a reminder changes what is undelivered.
    if (currentRoute().view === "notifications") scheduleNotificationsReload();
  } else if (ev.event === "reset") {
    state.lastEventId = null;
  }
}

// ---------- start ----------

function refreshTimes() {
  for (const el of document.querySelectorAll("time[data-rel]")) if (el.dataset.rel) el.textContent = relTime(el.dataset.rel);
}

function start() {
  setLang(preferredLang());
  onUnauthorized(logout);
  setViewRenderer(render);
  onHealthChange(() => {
    renderConn();
    renderBanners();
  });
  onSoundChange(renderBanners);
  onUnmute(() => {
    renderChrome();
    updateAlarm();
  });
  // Browsers start sound only after a user gesture: the first click or key anywhere allows it.
  document.addEventListener("click", unlockAudio);
  document.addEventListener("keydown", unlockAudio);
  window.addEventListener("hashchange", () => {
    if (state.me) render();
  });
  setInterval(refreshTimes, 15000);
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    history.replaceState(null, "", `${location.pathname}#/board`);
    login(decodeURIComponent(m[1]), false);
    return;
  }
  const saved = savedToken();
  if (saved) login(saved);
  else showLogin();
}

start();
