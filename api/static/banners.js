// The banners above every view: a new fire alarm (with its unit, detector and a button to open
// it), a degraded server (API or database down, stream lost, alarm intake failing) and the
// alarm sound that the browser keeps off until someone clicks. None of them can be dismissed:
// each stays as long as what it says is true.

import { problem } from "./health.js";
import { getLang, t } from "./i18n.js";
import { soundState, unlockAudio } from "./sound.js";
import { can, state } from "./state.js";
import { $, absTime, detectorText, fireCountsByUnit, h, icon, isFire, timeEl } from "./util.js";

const MAX_FIRES = 6;
let unmute = () => {};

// What the banner's "turn sound on" does besides unlocking audio (app.js redraws the top bar).
export function onUnmute(fn) {
  unmute = fn;
}

export function renderBanners() {
  const box = $("#banners");
  if (!box) return;
  if (!state.me) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(...[fireBanner(), soundBanner(), healthBanner(), channelBanner()].filter(Boolean));
}

// ---------- fire alarms ----------

function openAlert(id) {
  const target = `#/board/${id}`;
  if (location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = target;
}

function fireBanner() {
  const all = [...state.alerts.values()];
  const firing = all.filter((a) => isFire(a) && a.state === "firing").sort((x, y) => Date.parse(y.opened_at) - Date.parse(x.opened_at) || y.id - x.id);
  if (!firing.length) return null;
  const counts = fireCountsByUnit(all);
  const units = new Map();
  for (const a of firing.slice(0, MAX_FIRES)) {
    if (!units.has(a.unit_id)) units.set(a.unit_id, []);
    units.get(a.unit_id).push(a);
  }
  const rest = firing.length - Math.min(firing.length, MAX_FIRES);
  return h(
    "section",
    { id: "fire-banner", class: "banner fire-banner", role: "alert", "aria-live": "assertive" },
    [...units].map(([unitId, list]) =>
      h(
        "div",
        { class: "fire-unit", "data-unit": unitId },
        h(
          "div",
          { class: "fire-unit-head" },
          h("span", { class: "fire-word" }, icon("flame"), t("fire_alarm")),
          h("strong", { class: "fire-unit-name", text: list[0].unit_name }),
          list[0].unit_address ? h("span", { class: "fire-address", text: list[0].unit_address }) : null,
          (counts.get(unitId) || 0) >= 2 ? h("span", { class: "fire-count", "data-count": counts.get(unitId), text: t("detectors_alarming", { n: counts.get(unitId) }) }) : null,
        ),
        h(
          "ul",
          { class: "fire-entries" },
          list.map((a) =>
            h(
              "li",
              { class: "fire-entry", "data-id": a.id },
              h("span", { class: "fire-where", text: detectorText(a) || a.device_location || a.device_id }),
              a.device_location && detectorText(a) ? h("span", { class: "muted", text: a.device_location }) : null,
              h("span", { class: "muted", text: a.device_id }),
              a.silenced ? h("span", { class: "silenced-tag" }, icon("bell-off"), t("silenced_plain")) : null,
              timeEl(a.opened_at),
              h("button", { type: "button", class: "open-alert primary", "data-id": a.id, text: t("open_alert"), onclick: () => openAlert(a.id) }),
            ),
          ),
        ),
      ),
    ),
    rest > 0 ? h("a", { href: "#/board", class: "more-fires", text: t("more_fires", { n: rest }) }) : null,
  );
}

// ---------- sound ----------

function soundBanner() {
  if (!state.me.permissions.includes("alerts:read")) return null;
  const s = soundState();
  if (s === "on") return null;
  if (s === "muted") {
    return h(
      "div",
      { id: "sound-banner", class: "banner sound-muted", "data-sound": "muted" },
      icon("bell-off"),
      h("span", { text: t("sound_muted_banner") }),
      h("button", {
        type: "button",
        id: "sound-unmute",
        text: t("sound_on"),
        onclick: () => {
          state.muted = false;
          localStorage.setItem("fs.muted", "0");
          unlockAudio();
          unmute();
        },
      }),
    );
  }
  return h(
    "button",
    { type: "button", id: "sound-banner", class: "banner sound-off", "data-sound": "blocked", onclick: () => unlockAudio() },
    icon("bell-off"),
    h("span", { text: t("sound_off_banner") }),
  );
}

// ---------- notification channels that keep failing ----------

// Alarms still reach the board, but some parties are not being told: the control room must
// know which channel, since when, and how much waits (it is told through the others too), and
// where to see (and, once the channel works again, resend) what did not go out.
function channelBanner() {
  const failing = state.health.channels || [];
  if (!failing.length) return null;
  const listed = can("alerts:read") && state.me.role !== "display";
  return h(
    "div",
    { id: "channel-banner", class: "banner health-banner warn", role: "alert" },
    h("span", { class: "banner-sign", "aria-hidden": "true", text: "⚠" }),
    ...failing.map((c) =>
      h("strong", {
        class: "channel-failing",
        text: t("banner_channel", { channel: c.subject, time: absTime(c.failing_since), waiting: c.waiting }),
      }),
    ),
    listed ? h("a", { href: "#/notifications", id: "undelivered-link", class: "banner-link", text: t("undelivered_link") }) : null,
  );
}

// ---------- server health ----------

function healthBanner() {
  const p = problem();
  if (p === null) return null;
  const text =
    p === "intake"
      ? t("banner_intake", { checks: state.health.intake.map((c) => t(`check_${c}`)).join(getLang() === "zh-CN" ? "、" : ", ") })
      : t(`banner_${p === "api" ? "api_down" : p === "database" ? "db_down" : "stream_down"}`);
  return h(
    "div",
    { id: "health-banner", class: `banner health-banner ${p === "intake" ? "warn" : "bad"}`, "data-problem": p, role: "alert" },
    h("span", { class: "banner-sign", "aria-hidden": "true", text: "⚠" }),
    h("strong", { text }),
    state.health.since ? h("span", { class: "since", text: t("banner_since", { time: absTime(state.health.since) }) }) : null,
  );
}
