// The alarm sound: a siren generated with WebAudio while a fire alarm fires unacknowledged,
// the browsers' rule that sound starts only after a user gesture, and muting.
//
// After every load the browser keeps sound off until someone clicks or presses a key on the
// page. The console says so (banners.js) until sound really runs: soundState() is "on" only
// when the audio context is running, so a screen never claims a siren it cannot play.

import { state } from "./state.js";
import { isFire } from "./util.js";

// ---------- the alarm sound (WebAudio, generated; mutable) ----------

let audio = null;
let alarmTimer = null;
let changed = () => {};

export function onSoundChange(fn) {
  changed = fn;
}

// Made at sign-in without a gesture: it starts suspended where the browser blocks sound, and
// tells us (statechange) when a click lets it run.
export function initAudio() {
  if (audio) return;
  try {
    audio = new AudioContext();
    audio.addEventListener("statechange", () => {
      syncBody();
      changed();
    });
  } catch {
    audio = null;
  }
  syncBody();
}

export function unlockAudio() {
  try {
    if (!audio) initAudio();
    if (audio && audio.state === "suspended") audio.resume().catch(() => {});
  } catch {
    audio = null;
  }
  syncBody();
}

// "on" (the siren can sound), "muted" (the operator turned it off) or "blocked" (the browser
// has not allowed sound yet, or this browser has none).
export function soundState() {
  if (state.muted) return "muted";
  return audio && audio.state === "running" ? "on" : "blocked";
}

function syncBody() {
  document.body.dataset.sound = soundState();
}

function siren() {
  if (!audio || state.muted || audio.state !== "running") return;
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
export function updateAlarm(newFire = false) {
  const active = [...state.alerts.values()].some((a) => isFire(a) && a.state === "firing");
  document.body.dataset.alarm = active ? "on" : "off";
  syncBody();
  if (active && !state.muted) {
    if (newFire || !alarmTimer) siren();
    if (!alarmTimer) alarmTimer = setInterval(siren, 6000);
  } else if (alarmTimer) {
    clearInterval(alarmTimer);
    alarmTimer = null;
  }
  changed();
}
