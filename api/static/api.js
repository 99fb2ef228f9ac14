// The API client: JSON requests with the token, a raw request for file downloads, what to do
// when the server refuses the token, and the live alert stream (SSE read over fetch).

import { noteApi, noteDatabaseDown, noteStreamLost } from "./health.js";
import { t } from "./i18n.js";
import { state } from "./state.js";

// What a 401 does (app.js signs out); set once at start-up.
let unauthorized = () => {};

export function onUnauthorized(fn) {
  unauthorized = fn;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    noteApi(false);
    throw new ApiError(0, t("cannot_reach"));
  }
  noteApi(true);
  if (res.status === 401) {
    unauthorized(t("bad_token"));
    throw new ApiError(401, t("bad_token"));
  }
  const data = await res.json().catch(() => ({}));
  if (res.status === 503 && data.error === "unavailable") {
    noteDatabaseDown();
    throw new ApiError(503, t("db_unavailable"));
  }
  if (!res.ok) throw new ApiError(res.status, data.message || res.statusText);
  return data;
}

// A request whose answer the caller reads itself (a CSV file to download).
export function fetchRaw(path) {
  return fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${state.token}` } });
}

// ---------- live stream (Server-Sent Events over fetch, so that the token goes in a header) ----------

export async function startStream(onEvent, onConn) {
  if (state.streamAbort) state.streamAbort.abort();
  const abort = new AbortController();
  state.streamAbort = abort;
  while (!abort.signal.aborted && state.token) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
      if (state.lastEventId !== null) headers["Last-Event-ID"] = String(state.lastEventId);
      const res = await fetch("/api/v1/stream", { headers, signal: abort.signal, cache: "no-store" });
      if (res.status === 401) {
        unauthorized(t("bad_token"));
        return;
      }
      if (!res.ok || !res.body) throw new Error(`stream ${res.status}`);
      await readEvents(res.body, abort.signal, onEvent);
    } catch (err) {
      if (abort.signal.aborted) return;
    }
    onConn("reconnecting");
    noteStreamLost();
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function readEvents(body, signal, onEvent) {
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
      await onEvent(ev);
    }
  }
}
