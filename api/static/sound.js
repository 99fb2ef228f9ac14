// The alarm sound: a siren generated with WebAudio while a fire alarm fires unacknowledged,
// the browsers' rule that sound starts only after a user gesture, and muting.

import { state } from "./state.js";
import { isFire } from "./util.js";

// ---------- the alarm sound (WebAudio, generated; mutable) ----------

let audio = null;
let alarmTimer = null;

export function unlockAudio() {
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
export function updateAlarm(newFire = false) {
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
