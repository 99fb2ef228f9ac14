// What the console knows of the server's health, from three sources: every API call (does the
// server answer? is its database there?), the live stream (its `ready` and `status` events say
// whether the API reaches the database) and GET /status (what /readyz judges, always 200),
// polled every few seconds (database, broker, engines, outbox). The top bar's "Live" and the degraded banner are drawn from it.

import { api } from "./api.js";
import { state } from "./state.js";

const POLL_MS = 5000;
let changed = () => {};
let pollTimer = null;

export function onHealthChange(fn) {
  changed = fn;
}

function update(patch) {
  const h = state.health;
  const before = JSON.stringify(h);
  Object.assign(h, patch);
  const bad = problem() !== null;
  if (bad && !h.since) h.since = new Date().toISOString();
  if (!bad) h.since = null;
  if (JSON.stringify(h) !== before) changed();
}

// The worst problem known now: "api", "database", "stream", "intake", or null.
export function problem() {
  const h = state.health;
  if (!h.api) return "api";
  if (h.streamDb === false || h.readyDb === false) return "database";
  if (state.me && state.conn !== "live") return "stream";
  if (h.intake.length) return "intake";
  return null;
}

// "Live" only when the stream is connected and the database answers.
export function isLive() {
  const h = state.health;
  return state.conn === "live" && h.api && h.streamDb !== false && h.readyDb !== false;
}

export function noteApi(ok) {
  update({ api: ok });
}

// An API answer of 503 "unavailable": the database is away (the next /status says when it is back).
export function noteDatabaseDown() {
  update({ readyDb: false });
}

export function noteStreamDatabase(database) {
  update({ streamDb: database === "ok" });
}

export function noteStreamLost() {
  update({ streamDb: null });
}

let polling = false;

async function pollReady() {
  if (polling || !state.token) return;
  polling = true;
  try {
    // api() notes an unreachable server, a 503 from a database that does not answer (the
    // token cannot even be checked then) and a revoked token (sign-out).
    const body = await api("/status");
    const checks = body.checks;
    const intake = Object.keys(checks).filter((k) => k !== "database" && checks[k] !== "ok");
    update({
      readyDb: checks.database === "ok",
      intake: checks.database === "ok" ? intake : [],
      channels: body.channel_alerts || [],
    });
  } catch {
    // Said by api() already.
  } finally {
    polling = false;
  }
}

export function startHealth() {
  stopHealth();
  pollReady();
  pollTimer = setInterval(pollReady, POLL_MS);
}

export function stopHealth() {
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = null;
  state.health = { api: true, streamDb: null, readyDb: null, intake: [], channels: [], since: null };
}
