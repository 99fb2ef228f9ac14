// Undelivered notifications: the view of the failed and given-up ones (newest first, with
// "Retry all given up" for operators), and what the alert detail shares with it: a
// notification's state as words, "retried by X at T", and sending one again.

import { api } from "./api.js";
import { actorName, ruleName, t } from "./i18n.js";
import { canAct, currentRoute, state } from "./state.js";
import { $, absTime, h, toast } from "./util.js";

// What an operator may send again: what will not be tried again by itself (store/notifications.py
// RETRYABLE_STATES). A failed one is still being retried by the engine.
const RESENDABLE = ["given_up", "cancelled"];
const WINDOWS_H = [1, 24, 24 * 7, 24 * 30];
const LIMIT = 200;
const POLL_MS = 15000;

// ---------- shared with the alert detail ----------

function mayResend(n) {
  return canAct() && RESENDABLE.includes(n.state);
}

// The state in words (with the tries, where no column says them); "sent" over SMS only means
// the provider took it (delivered comes with its receipt), which an operator waiting for
// someone to answer should know.
export function nstateCell(n, { tries = true } = {}) {
  return h("td", {
    class: `nstate ${n.state}`,
    title: n.state === "sent" && n.channel === "sms" ? t("nstate_sent_sms_hint") : null,
    text: t(`nstate_${n.state}`) + (tries && n.attempts > 1 ? ` · ${t("attempts_n", { n: n.attempts })}` : ""),
  });
}

// The last error; after a resend the engine writes "retried by X; before: <error>" there until
// the next try, said here in words (who resent it has its own line).
export function errorText(n) {
  const e = n.last_error || "";
  const prefix = n.retried_by ? `retried by ${n.retried_by}` : null;
  if (!prefix || !e.startsWith(prefix)) return e;
  const before = e.slice(prefix.length).replace(/^; before: /, "");
  return before ? t("error_before", { error: before }) : "";
}

export function retriedLine(n) {
  if (!n.retried_by) return null;
  return h("div", { class: "retried muted small", text: t("retried_by", { who: actorName(n.retried_by), time: absTime(n.retried_at) }) });
}

// POST /notifications/retry; what the server answered, or null when it refused (said in a toast).
async function resend(body) {
  try {
    return await api("/notifications/retry", { method: "POST", body });
  } catch (err) {
    toast(`${t("action_failed")}: ${err.message}`, "error");
    return null;
  }
}

// Send one notification again and say whether it was queued; the button stays disabled meanwhile.
async function resendOne(button, id) {
  button.disabled = true;
  const out = await resend({ ids: [id] });
  if (out && out.queued.includes(id)) toast(t("resend_queued", { id }));
  else if (out) toast(t("resend_not_queued", { id }), "error");
  button.disabled = false;
  return out;
}

export function resendButton(n, after) {
  if (!mayResend(n)) return null;
  return h("button", {
    type: "button",
    class: "act resend",
    "data-action": "resend",
    "data-id": n.id,
    text: t("resend"),
    onclick: async (e) => {
      e.stopPropagation();
      await resendOne(e.currentTarget, n.id);
      after();
    },
  });
}

// ---------- the view ----------

function windowStart() {
  return new Date(Date.now() - state.notificationsForm.hours * 3600e3);
}

function windowLabel(hours) {
  return hours < 48 ? t("last_hours", { n: hours }) : t("last_days", { n: hours / 24 });
}

function alertCell(n) {
  if (n.alert_id === null) return h("td", { class: "muted", text: "–" });
  return h(
    "td",
    {},
    h("a", { href: `#/board/${n.alert_id}`, text: `#${n.alert_id}` }),
    n.rule_id ? h("span", { class: "muted", title: n.rule_id, text: ` ${ruleName(n.rule_id)}` }) : null,
  );
}

function row(n) {
  return h(
    "tr",
    { "data-id": n.id, "data-state": n.state },
    h("td", { title: absTime(n.created_at), text: absTime(n.created_at) }),
    h("td", { text: t(`channel_${n.channel}`) }),
    h("td", { class: "receiver", text: n.receiver }),
    alertCell(n),
    nstateCell(n, { tries: false }),
    h("td", { text: String(n.attempts) }),
    h("td", { class: "last-error" }, errorText(n), retriedLine(n)),
    h("td", {}, resendButton(n, () => reloadNotifications())),
  );
}

// The failed and given-up notifications queued since a time, newest first (the token's units).
function load(since) {
  const q = new URLSearchParams({ state: "failed,given_up", since: since.toISOString(), limit: String(LIMIT) });
  return api(`/notifications?${q}`);
}

// What "Retry all given up" resends: every given-up one queued since the listed window's start,
// or, when the list was cut at LIMIT, since its oldest row, so that nothing unseen goes out.
function resendSince(items, since) {
  return items.length >= LIMIT ? items[items.length - 1].created_at : since.toISOString();
}

async function resendAll(items, since) {
  const givenUp = items.filter((n) => n.state === "given_up").length;
  const from = resendSince(items, since);
  if (!window.confirm(t("resend_all_confirm", { n: givenUp, since: absTime(from) }))) return;
  const out = await resend({ given_up: true, since: from });
  if (out) toast(t("resend_all_done", { n: out.queued.length }));
  await reloadNotifications();
}

function fill(box, data, since) {
  const items = data.items;
  const failed = items.filter((n) => n.state === "failed").length;
  const givenUp = items.length - failed;
  const button = canAct()
    ? h("button", { type: "button", class: "primary", id: "resend-all", disabled: givenUp === 0, text: t("resend_all"), onclick: () => resendAll(items, since) })
    : null;
  box.replaceChildren(
    h(
      "div",
      { class: "toolbar" },
      h("p", { class: "muted small", id: "undelivered-summary", text: [t("undelivered_summary", { failed, given_up: givenUp }), items.length >= LIMIT ? t("undelivered_truncated", { n: LIMIT }) : ""].filter(Boolean).join(" ") }),
      h("span", { class: "grow" }),
      button,
    ),
    items.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "grid", id: "undelivered-table" },
            h("thead", {}, h("tr", {}, [t("time"), t("channel"), t("receiver"), t("alert"), t("status"), t("attempts"), t("last_error"), ""].map((x) => h("th", { text: x })))),
            h("tbody", {}, items.map(row)),
          ),
        )
      : h("p", { class: "empty", text: t("undelivered_none") }),
  );
}

// Reload the list in place (the stream's alert changes and a timer call this), keeping the form.
export async function reloadNotifications() {
  const box = $("#undelivered");
  if (!box) return;
  const since = windowStart();
  try {
    fill(box, await load(since), since);
  } catch (err) {
    box.replaceChildren(h("p", { class: "error", role: "alert", text: t("view_failed", { message: err.message }) }));
  }
}

let pollTimer = null;
let soonTimer = null;

// Several alert changes in a burst (an escalation round) reload the list once.
export function scheduleNotificationsReload() {
  clearTimeout(soonTimer);
  soonTimer = setTimeout(() => reloadNotifications(), 800);
}

export async function renderNotifications() {
  const main = $("#view");
  const f = state.notificationsForm;
  const since = windowStart();
  const data = await load(since);
  const range = h(
    "select",
    {
      id: "nt-window",
      onchange: (e) => {
        f.hours = Number(e.target.value);
        reloadNotifications();
      },
    },
    WINDOWS_H.map((n) => h("option", { value: n, selected: n === f.hours, text: windowLabel(n) })),
  );
  const box = h("div", { id: "undelivered" });
  main.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("div", { class: "toolbar wrap" }, h("h1", { text: t("undelivered_title") }), h("label", { class: "field" }, h("span", { text: t("range") }), range)),
      h("p", { class: "muted small", text: t("undelivered_hint") }),
      box,
    ),
  );
  fill(box, data, since);
  // Deliveries and give-ups are not alert changes, so the stream says nothing of them: poll
  // while the view is shown.
  clearInterval(pollTimer);
  pollTimer = setInterval(() => {
    if (currentRoute().view !== "notifications" || !state.me) {
      clearInterval(pollTimer);
      pollTimer = null;
    } else reloadNotifications();
  }, POLL_MS);
}
