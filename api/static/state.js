// The console's shared state (one plain object the views read and change directly), the
// permission check, the current route, and the hook through which a view asks for a redraw.

export const state = {
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
  showClosedHazards: false,
  hazardGroup: "district",
  selectedHazard: null,
  // What the console knows of the server's health (health.js): whether the API answers, and
  // whether the database does as the stream and /readyz last said (null: not known yet).
  health: { api: true, streamDb: null, readyDb: null, intake: [], channels: [], since: null },
  searchForm: { unit: "", device: "", rule: "", state: "", from: "", to: "" },
  notificationsForm: { hours: 24 },
};

export function can(permission) {
  return Boolean(state.me && state.me.permissions.includes(permission));
}

// Whether this token may act on alerts (acknowledge, resolve, close, resend a notification):
// operators and admins; analysts and wall displays only read.
export function canAct() {
  return can("alerts:act");
}

// ---------- routing ----------

export function currentRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  // What follows the argument: #/unit/<id>/code/<code> (the unit opened from its QR sticker).
  const rest = parts.slice(2).map(decodeURIComponent);
  return { view: parts[0] || "board", arg: parts[1] ? decodeURIComponent(parts[1]) : null, rest };
}

// The router (app.js) registers how to draw the current view; views redraw through renderView
// (so that they need not import the router).
let viewRenderer = () => {};

export function setViewRenderer(fn) {
  viewRenderer = fn;
}

export function renderView() {
  viewRenderer();
}
