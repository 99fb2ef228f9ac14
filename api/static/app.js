// The console's entry point: signing in and out, the top bar, routing between the views, the
// live stream's events, and start-up. The control room: live alert board over SSE, unit view
// with charts, offline devices, district map, telemetry explorer, statistics and silences.
// Native ES modules, no build step.

import { api, onUnauthorized, startStream } from "./api.js";
import { loadOpenAlerts, refreshDetail, renderBoard, renderCounters, upsertAlert } from "./board.js";
import { getLang, preferredLang, setLang, t } from "./i18n.js";
import { renderMap } from "./map.js";
import { renderSilences } from "./silences.js";
import { unlockAudio, updateAlarm } from "./sound.js";
import { can, currentRoute, setViewRenderer, state } from "./state.js";
import { renderStats } from "./stats.js";
import { renderTelemetry } from "./telemetry.js";
import { renderOffline, renderUnit, renderUnits } from "./unit.js";
import { $, h, icon, relTime, toast } from "./util.js";

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
  startStream(handleEvent, setConn);
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

function setConn(conn) {
  state.conn = conn;
  const el = $("#conn");
  if (el) {
    el.className = `conn ${conn}`;
    el.textContent = conn === "live" ? t("live") : t("reconnecting");
  }
}

// ---------- routing ----------

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

// ---------- live stream events ----------

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

// ---------- start ----------

function refreshTimes() {
  for (const el of document.querySelectorAll("time[data-rel]")) if (el.dataset.rel) el.textContent = relTime(el.dataset.rel);
}

function start() {
  setLang(preferredLang());
  onUnauthorized(logout);
  setViewRenderer(render);
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
