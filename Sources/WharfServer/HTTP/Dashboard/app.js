// The Wharf dashboard: one module, no dependencies. It reads and acts only through JSON-RPC over
// `POST /rpc` (with the token as a bearer header) and follows `GET /events` to refresh what it shows.
// Everything a user or a job put in the database is rendered as text (`h` below never parses HTML).

const main = document.getElementById("main");
const TOKEN_KEY = "wharf.token";
const session = { token: sessionStorage.getItem(TOKEN_KEY), role: null, replicaId: null };

// Which roles may call each method the dashboard offers as an action (Protocol/README.md, "Roles").
const ACTION_ROLES = {
  "jobs.retry": ["admin", "producer"],
  "jobs.cancel": ["admin", "producer"],
  "queues.pause": ["admin", "producer"],
  "queues.resume": ["admin", "producer"],
  "cron.pause": ["admin", "producer"],
  "cron.resume": ["admin", "producer"],
  "cron.trigger": ["admin", "producer"],
  "cron.upsert": ["admin", "producer"],
  "cron.remove": ["admin", "producer"],
  "webhooks.redeliver": ["admin", "producer"],
  "webhooks.recover": ["admin", "producer"],
  "webhooks.enable": ["admin"],
  "webhooks.test": ["admin"],
  "webhooks.rotateSecret": ["admin"],
};
const can = (method) => (ACTION_ROLES[method] || []).includes(session.role);

// ---- DOM -------------------------------------------------------------------------------------------

/** Builds an element. Strings and numbers become text nodes; `on*` props become listeners. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}
const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function table(headers, rows, empty = "Nothing here.") {
  if (rows.length === 0) return h("p", { class: "muted" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", class: numeric(x) ? "num" : null }, label(x))))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: numeric(headers[i]) ? "num" : null }, c))))),
    ),
  );
}
// A header may be "#Name" to right-align its column (numbers).
const numeric = (x) => typeof x === "string" && x.startsWith("#");
const label = (x) => (numeric(x) ? x.slice(1) : x);

function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}
function stateBadge(state) {
  const kind =
    { completed: "ok", enabled: "ok", available: "ok", running: "ok", dead: "bad", disabled: "bad", failed: "bad",
      failing: "bad", retryable: "warn", paused: "warn", cancelled: "", scheduled: "" }[state] ?? "";
  return badge(state, kind);
}
function pre(value) {
  return h("pre", {}, value === undefined ? "" : JSON.stringify(value, null, 2));
}
function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter((p) => p).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}
function link(href, text) {
  return h("a", { href }, text);
}

// ---- Time ------------------------------------------------------------------------------------------

const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
function fmtTime(iso, zone) {
  if (!iso) return "—";
  const d = new Date(iso);
  const f = new Intl.DateTimeFormat("sv-SE", {
    timeZone: zone || undefined, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
    minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
  return f.format(d);
}
function zoneOffset(iso, zone) {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" }).formatToParts(new Date(iso));
  return parts.find((p) => p.type === "timeZoneName")?.value ?? "";
}
function ago(iso) {
  if (!iso) return "—";
  return duration(Date.now() - new Date(iso).getTime(), true);
}
function duration(ms, past) {
  if (ms === null || ms === undefined) return "—";
  const future = ms < 0;
  let s = Math.abs(ms) / 1000;
  const text =
    s < 1 ? `${Math.round(s * 1000)} ms` : s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min`
      : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  if (!past) return text;
  return future ? `in ${text}` : `${text} ago`;
}
const timeCell = (iso) => (iso ? h("time", { datetime: iso, title: fmtTime(iso) }, ago(iso)) : "—");

// ---- JSON-RPC over HTTP ----------------------------------------------------------------------------

class RPCError extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.code;
    this.data = error.data || {};
  }
}
let nextId = 1;
async function rpc(method, params = {}) {
  const headers = { "Content-Type": "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const res = await fetch("/rpc", {
    method: "POST", headers, body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  });
  const body = await res.json();
  if (body.error) {
    const e = new RPCError(body.error);
    if (e.code === -32001 && method !== "session.hello") {
      session.role = null;
      route();
    }
    throw e;
  }
  return body.result;
}
/** Every page of a keyset-paged list method (bounded: an overview, not an export). */
async function listAll(method, key, params = {}, maxPages = 10) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const r = await rpc(method, { ...params, limit: 100, ...(cursor ? { cursor } : {}) });
    out.push(...r[key]);
    cursor = r.nextCursor ?? r.cursor ?? null;
    if (!cursor) break;
  }
  return out;
}

// ---- Actions ---------------------------------------------------------------------------------------

const dialog = document.getElementById("confirm");
/** Asks before acting; resolves to {ok, note}. */
function confirmAction(text, { note = false, okText = "Confirm" } = {}) {
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-note-label").hidden = !note;
  document.getElementById("confirm-note").value = "";
  document.getElementById("confirm-ok").textContent = okText;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve({ ok: dialog.returnValue === "ok", note: document.getElementById("confirm-note").value }),
      { once: true },
    );
  });
}
function toast(text, isError) {
  const t = h("div", { class: `toast ${isError ? "error" : ""}`, role: "status" }, text);
  document.body.append(t);
  setTimeout(() => t.remove(), 4000);
}
/** A button that, after confirmation, calls `method` and refreshes the view. */
function action(method, text, params, { confirm, note, danger, after } = {}) {
  if (!can(method)) return null;
  return h(
    "button",
    {
      type: "button", class: danger ? "danger" : null, "data-action": method,
      onclick: async () => {
        let extra = {};
        if (confirm) {
          const answer = await confirmAction(confirm, { note: !!note, okText: text });
          if (!answer.ok) return;
          if (note && answer.note) extra[note] = answer.note;
        }
        try {
          const result = await rpc(method, { ...params, ...extra });
          if (after) after(result);
          else toast(`${text}: done`);
          refresh();
        } catch (e) {
          toast(`${text} failed: ${e.message}`, true);
        }
      },
    },
    text,
  );
}

// ---- Views -----------------------------------------------------------------------------------------

const views = {
  overview: { live: true, render: overview },
  jobs: { live: true, render: jobsView },
  job: { live: true, render: jobView },
  schedules: { live: true, render: schedulesView },
  schedule: { live: true, render: scheduleView },
  scheduleEdit: { live: false, render: scheduleEdit },
  locks: { live: true, render: locksView },
  webhooks: { live: true, render: webhooksView },
  webhook: { live: true, render: webhookView },
};

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  if (parts.length === 0) return { view: "overview", params };
  if (parts[0] === "jobs") return parts[1] ? { view: "job", id: parts[1], params } : { view: "jobs", params };
  if (parts[0] === "schedules") {
    if (parts[1] === "new") return { view: "scheduleEdit", params };
    if (parts[1] && parts[2] === "edit") return { view: "scheduleEdit", name: parts[1], params };
    return parts[1] ? { view: "schedule", name: parts[1], params } : { view: "schedules", params };
  }
  if (parts[0] === "locks") return { view: "locks", params };
  if (parts[0] === "webhooks") return parts[1] ? { view: "webhook", id: parts[1], params } : { view: "webhooks", params };
  return { view: "notFound", params };
}
function hashWith(base, params) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== undefined && v !== null));
  const s = q.toString();
  return s ? `${base}?${s}` : base;
}

let current = null;
let renderSeq = 0;
/** Shows the page the address names; `moved` (a navigation, not the first load) focuses its content. */
async function route(moved = true) {
  if (!session.role) return login();
  const where = parseHash();
  current = where;
  const section = { job: "jobs", schedule: "schedules", scheduleEdit: "schedules", webhook: "webhooks" }[where.view] || where.view;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  await render(moved);
}
/** Renders the current view into `main`, which is `aria-busy` until it is done and then names the address
 * it shows in `data-shows` (the hash), so a reader (or a test) knows the page is settled. */
async function render(fresh) {
  const seq = ++renderSeq;
  const where = current;
  const shows = location.hash || "#/";
  const view = views[where.view];
  main.setAttribute("aria-busy", "true");
  let content;
  try {
    content = view ? await view.render(where) : [h("h1", {}, "Not found"), h("p", {}, "No such page.")];
  } catch (e) {
    content = [h("h1", {}, "Error"), h("p", { class: "error", role: "alert" }, e.message)];
  }
  if (seq !== renderSeq) return; // a newer render started meanwhile
  const scroll = window.scrollY;
  main.replaceChildren(...[content].flat());
  main.dataset.shows = shows;
  main.removeAttribute("aria-busy");
  if (fresh) main.focus({ preventScroll: true });
  else window.scrollTo(0, scroll);
}
/** Re-renders a live view in place unless the user is in the middle of something. */
function refresh() {
  if (!current || !session.role) return;
  const view = views[current.view];
  if (!view?.live || dialog.open) return;
  const active = document.activeElement;
  if (active && main.contains(active) && ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName)) return;
  render(false);
}

async function login(message) {
  document.getElementById("who").replaceChildren();
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off", required: true });
  const error = h("p", { class: "error", role: "alert" }, message || "");
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: async (ev) => {
        ev.preventDefault();
        session.token = input.value.trim();
        const ok = await hello();
        if (ok) {
          sessionStorage.setItem(TOKEN_KEY, session.token);
          route();
        } else {
          session.token = null;
          error.textContent = "That token was refused.";
        }
      },
    },
    h("label", { for: "token" }, "Token", input),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  main.replaceChildren(h("h1", {}, "Sign in"), h("p", {}, "This server needs a token. It is kept for this tab only."), form, error);
  delete main.dataset.shows;
  main.removeAttribute("aria-busy");
  input.focus();
}

async function hello() {
  try {
    const r = await rpc("session.hello", { client: "wharf-dashboard" });
    session.role = r.role;
    session.replicaId = r.replicaId;
    const who = document.getElementById("who");
    who.replaceChildren(
      `${r.role} · replica ${r.replicaId} `,
      session.token
        ? h("button", {
          type: "button", id: "signout",
          onclick: () => {
            sessionStorage.removeItem(TOKEN_KEY);
            session.token = null;
            session.role = null;
            route();
          },
        }, "Sign out")
        : null,
    );
    return true;
  } catch (e) {
    session.role = null;
    return false;
  }
}

// Overview: queues, the replica and its database, alerts.
async function overview() {
  const [health, info, queues, endpoints, schedules, dead, replicas] = await Promise.all([
    rpc("server.health"), rpc("server.info"), listAll("queues.list", "queues"), listAll("webhooks.list", "endpoints"),
    listAll("cron.list", "schedules"), rpc("jobs.list", { state: "dead", limit: 200 }), rpc("server.replicas"),
  ]);
  // queues.list names the queues with unfinished jobs; a queue whose jobs all died belongs here too.
  const names = [...new Set([...queues.map((q) => q.name), ...dead.jobs.map((j) => j.queue)])].sort();
  const stats = await Promise.all(names.slice(0, 100).map((queue) => rpc("queues.stats", { queue })));
  const alerts = [];
  for (const s of stats) {
    if (s.counts.dead > 0)
      alerts.push(h("li", { class: "alert-bad" }, link(hashWith("#/jobs", { queue: s.queue, state: "dead" }), `${s.counts.dead} dead job(s) in ${s.queue}`)));
    if (s.paused) alerts.push(h("li", {}, `Queue ${s.queue} is paused`));
  }
  for (const e of endpoints) {
    const st = e.health?.state;
    if (st && st !== "enabled")
      alerts.push(h("li", { class: "alert-bad" }, link(`#/webhooks/${e.id}`, `Endpoint ${e.id} (${e.url}) is ${st}`)));
  }
  for (const s of schedules) {
    if (s.stats?.missed > 0) alerts.push(h("li", {}, link(`#/schedules/${encodeURIComponent(s.name)}`, `Schedule ${s.name} missed ${s.stats.missed} fire(s)`)));
  }
  const db = health.database || {};
  const totals = stats.reduce((t, s) => {
    for (const [k, v] of Object.entries(s.counts)) t[k] = (t[k] || 0) + v;
    return t;
  }, {});
  return [
    h("h1", {}, "Overview"),
    h(
      "div",
      { class: "cards" },
      h("div", { class: "card" }, h("div", { class: "muted" }, "Replica"), h("div", { class: "big" }, info.replicaId),
        h("div", {}, `up ${duration(info.uptimeMs)} · v${info.version}`)),
      h("div", { class: "card", "data-testid": "database" }, h("div", { class: "muted" }, "Database"),
        h("div", { class: "big" }, db.reachable ? badge("reachable", "ok") : badge("unreachable", "bad")),
        h("div", {}, `PostgreSQL ${info.postgresVersion ?? "?"} · round trip ${db.roundTripMs ?? "?"} ms · pool ${db.poolReady ?? "?"}/${db.poolSize ?? "?"}`)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Jobs waiting / running"),
        h("div", { class: "big" }, `${(totals.available || 0) + (totals.scheduled || 0) + (totals.retryable || 0)} / ${totals.running || 0}`),
        h("div", {}, `${totals.dead || 0} dead`)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Schedules · endpoints"),
        h("div", { class: "big" }, `${schedules.length} · ${endpoints.length}`),
        h("div", {}, `${schedules.filter((s) => s.paused).length} paused schedules`)),
    ),
    h("h2", {}, "Alerts"),
    alerts.length ? h("ul", { class: "alerts", "data-testid": "alerts" }, alerts) : h("p", { class: "muted" }, "No alerts."),
    h("h2", {}, "Replicas"),
    table(
      ["Replica", "State", "Host", "Listens on", "HTTP", "Version", "Started", "Last seen"],
      replicas.replicas.map((r) => [
        [r.replicaId, r.self ? h("span", { class: "muted" }, " (this page's)") : null],
        !r.alive ? badge("gone", "bad") : r.draining ? badge("draining", "warn") : badge("alive", "ok"),
        r.hostname, r.listen, r.httpListen ?? "—", r.version, timeCell(r.startedAt), timeCell(r.lastSeenAt),
      ]),
      "No replica has recorded itself yet.",
    ),
    h("h2", {}, "Queues"),
    table(
      ["Queue", "#Scheduled", "#Available", "#Running", "#Retryable", "#Completed", "#Dead", "#Cancelled", "Oldest available", "Last hour", "#Jobs/s", ""],
      stats.map((s) => [
        [link(hashWith("#/jobs", { queue: s.queue }), s.queue), " ", s.paused ? badge("paused", "warn") : null],
        s.counts.scheduled, s.counts.available, s.counts.running, s.counts.retryable, s.counts.completed,
        s.counts.dead ? link(hashWith("#/jobs", { queue: s.queue, state: "dead" }), s.counts.dead) : 0, s.counts.cancelled,
        s.oldestAvailableAgeMs != null ? duration(s.oldestAvailableAgeMs) : "—",
        sparkline(s.lastHour), s.throughputPerSec,
        s.paused ? action("queues.resume", "Resume", { queue: s.queue }) : action("queues.pause", "Pause", { queue: s.queue }, { confirm: `Pause queue ${s.queue}? Workers stop getting its jobs.` }),
      ]),
      "No queues yet: enqueue a job.",
    ),
  ];
}

/** Jobs completed (and, in red, jobs that died) per minute over the last hour. */
function sparkline(lastHour) {
  if (!lastHour?.completed) return "—";
  const w = 120, hgt = 24;
  const series = [lastHour.completed, lastHour.dead || []];
  const max = Math.max(1, ...series.flat());
  const el = svg("svg", { class: "spark", width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}`, role: "img" });
  series.forEach((s, i) => {
    if (!s.length) return;
    const pts = s.map((v, x) => `${(x * w) / Math.max(1, s.length - 1)},${hgt - 1 - (v * (hgt - 2)) / max}`).join(" ");
    el.append(svg("polyline", { points: pts, class: i ? "fail" : "" }));
  });
  const total = lastHour.completed.reduce((a, b) => a + b, 0);
  const failed = (lastHour.dead || []).reduce((a, b) => a + b, 0);
  el.setAttribute("aria-label", `${total} completed, ${failed} dead in the last hour`);
  el.append(Object.assign(svg("title", {}), { textContent: `${total} completed, ${failed} dead in the last hour` }));
  return el;
}

const JOB_STATES = ["", "waiting", "scheduled", "available", "running", "retryable", "completed", "dead", "cancelled"];
async function jobsView({ params }) {
  const filter = {
    queue: params.queue || "", state: params.state || "", kind: params.kind || "", tag: params.tag || "",
    from: params.from || "", before: params.before || "",
  };
  const req = { limit: 50 };
  for (const k of ["queue", "state", "kind", "tag"]) if (filter[k]) req[k] = filter[k];
  // datetime-local values are the viewer's local time; the API takes RFC 3339.
  if (filter.from) req.createdFrom = new Date(filter.from).toISOString();
  if (filter.before) req.createdBefore = new Date(filter.before).toISOString();
  if (params.cursor) req.cursor = params.cursor;
  const page = params.uniqueKey ? await rpc("jobs.list", { uniqueKey: params.uniqueKey }) : await rpc("jobs.list", req);
  const next = page.nextCursor ?? page.cursor ?? null;

  const inputs = {
    queue: h("input", { name: "queue", value: filter.queue, autocomplete: "off" }),
    state: h("select", { name: "state" }, JOB_STATES.map((s) => h("option", { value: s, selected: s === filter.state }, s || "any"))),
    kind: h("input", { name: "kind", value: filter.kind, autocomplete: "off" }),
    tag: h("input", { name: "tag", value: filter.tag, autocomplete: "off" }),
    from: h("input", { name: "from", type: "datetime-local", value: filter.from }),
    before: h("input", { name: "before", type: "datetime-local", value: filter.before }),
  };
  const labels = { from: "created from", before: "created before" };
  const filters = h(
    "form",
    {
      class: "filters", role: "search",
      onsubmit: (ev) => {
        ev.preventDefault();
        location.hash = hashWith("#/jobs", Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value.trim()])));
      },
    },
    Object.entries(inputs).map(([k, el]) => h("label", {}, labels[k] || k, el)),
    h("button", { type: "submit", class: "primary" }, "Filter"),
  );
  const findInput = h("input", { name: "id", placeholder: "job id", autocomplete: "off", inputmode: "numeric" });
  const keyInput = h("input", { name: "uniqueKey", placeholder: "uniqueKey", autocomplete: "off", value: params.uniqueKey || "" });
  const find = h(
    "form",
    {
      class: "filters",
      onsubmit: (ev) => {
        ev.preventDefault();
        if (findInput.value.trim()) location.hash = `#/jobs/${encodeURIComponent(findInput.value.trim())}`;
        else if (keyInput.value.trim()) location.hash = hashWith("#/jobs", { uniqueKey: keyInput.value.trim() });
      },
    },
    h("label", {}, "Find by id", findInput),
    h("label", {}, "or unfinished job by uniqueKey", keyInput),
    h("button", { type: "submit" }, "Find"),
  );
  const jobs = page.jobs;
  const bulk = [];
  const retryable = jobs.filter((j) => ["dead", "cancelled"].includes(j.state));
  const cancellable = jobs.filter((j) => ["waiting", "scheduled", "available", "retryable"].includes(j.state));
  if (retryable.length && can("jobs.retry")) bulk.push(bulkButton("jobs.retry", `Retry these ${retryable.length}`, retryable));
  if (cancellable.length && can("jobs.cancel")) bulk.push(bulkButton("jobs.cancel", `Cancel these ${cancellable.length}`, cancellable));
  return [
    h("h1", {}, "Jobs"),
    filters,
    find,
    bulk.length ? h("div", { class: "actions" }, bulk) : null,
    table(
      ["Id", "Queue", "Kind", "State", "#Attempt", "Run at", "Created", "Tags"],
      jobs.map((j) => [
        link(`#/jobs/${encodeURIComponent(j.id)}`, j.id), j.queue, j.kind, stateBadge(j.state), `${j.attempt}/${j.maxAttempts}`,
        timeCell(j.runAt), timeCell(j.createdAt), (j.tags || []).join(", "),
      ]),
      "No jobs match.",
    ),
    h(
      "div",
      { class: "pager" },
      params.cursor ? link(hashWith("#/jobs", filter), "First page") : null,
      next ? link(hashWith("#/jobs", { ...filter, cursor: next }), "Next page") : null,
    ),
  ];
}
function bulkButton(method, text, jobs) {
  return h(
    "button",
    {
      type: "button", "data-action": `${method}:bulk`,
      onclick: async () => {
        const answer = await confirmAction(`${text}? Job ids: ${jobs.map((j) => j.id).join(", ")}`, { okText: text });
        if (!answer.ok) return;
        const results = await Promise.allSettled(jobs.map((j) => rpc(method, { id: j.id })));
        const failed = results.filter((r) => r.status === "rejected").length;
        toast(failed ? `${text}: ${failed} of ${jobs.length} refused` : `${text}: done`, failed > 0);
        refresh();
      },
    },
    text,
  );
}

async function jobView({ id }) {
  const j = await rpc("jobs.get", { id });
  const known = new Set(["id", "queue", "kind", "payload", "state", "priority", "attempt", "maxAttempts", "runAt", "createdAt",
    "tags", "meta", "attempts", "result", "progress", "lastError", "finishedAt", "uniqueKey", "lockKey", "leasedBy", "leaseExpiresAt"]);
  const other = Object.fromEntries(Object.entries(j).filter(([k]) => !known.has(k)));
  const actions = [];
  if (["dead", "cancelled", "retryable", "scheduled"].includes(j.state))
    actions.push(action("jobs.retry", j.state === "scheduled" || j.state === "retryable" ? "Run now" : "Retry", { id: j.id },
      { confirm: `Make job ${j.id} available to run now?` }));
  if (["waiting", "scheduled", "available", "retryable"].includes(j.state))
    actions.push(action("jobs.cancel", "Cancel", { id: j.id }, { confirm: `Cancel job ${j.id}?`, danger: true }));
  return [
    h("h1", {}, `Job ${j.id} `, stateBadge(j.state)),
    h("div", { class: "actions" }, actions),
    kv([
      ["Queue", link(hashWith("#/jobs", { queue: j.queue }), j.queue)], ["Kind", j.kind], ["Priority", j.priority],
      ["Attempt", `${j.attempt} of ${j.maxAttempts}`], ["Run at", fmtTime(j.runAt)], ["Created", fmtTime(j.createdAt)],
      j.finishedAt ? ["Finished", fmtTime(j.finishedAt)] : null, j.uniqueKey ? ["Unique key", j.uniqueKey] : null,
      j.lockKey ? ["Lock", link("#/locks", j.lockKey)] : null, ["Tags", (j.tags || []).join(", ") || "—"],
    ]),
    h("h2", {}, "Payload"), pre(j.payload),
    j.result !== undefined ? [h("h2", {}, "Result"), pre(j.result)] : null,
    j.progress !== undefined ? [h("h2", {}, "Progress"), pre(j.progress)] : null,
    j.lastError !== undefined ? [h("h2", {}, "Last error"), pre(j.lastError)] : null,
    Object.keys(j.meta || {}).length ? [h("h2", {}, "Meta"), pre(j.meta)] : null,
    Object.keys(other).length ? [h("h2", {}, "Other"), pre(other)] : null,
    h("h2", {}, "Attempts"),
    table(
      ["#", "Worker", "Started", "Finished", "Outcome", "Error"],
      (j.attempts || []).map((a) => [
        a.attempt ?? "", a.worker ?? "—", a.leasedAt ? fmtTime(a.leasedAt) : fmtTime(a.at), a.finishedAt ? fmtTime(a.finishedAt) : "—",
        a.outcome ?? a.state ?? "—", a.error !== undefined && a.error !== null ? pre(a.error) : "—",
      ]),
      "Not attempted yet.",
    ),
  ];
}

async function schedulesView() {
  const schedules = await listAll("cron.list", "schedules");
  return [
    h("h1", {}, "Schedules"),
    can("cron.upsert") ? h("div", { class: "actions" }, link("#/schedules/new", "New schedule")) : null,
    table(
      ["Name", "When", "Next fire (its zone)", "Next fire (yours)", "Last fire", "State", ""],
      schedules.map((s) => [
        link(`#/schedules/${encodeURIComponent(s.name)}`, s.name), s.description ?? s.expression ?? `every ${s.everyMs} ms`,
        fmtTime(s.nextFireAt, s.timezone), fmtTime(s.nextFireAt, viewerZone), lastFireCell(s.lastFire),
        s.paused ? [badge("paused", "warn"), s.pausedNote ? h("div", { class: "muted" }, s.pausedNote) : null] : badge("active", "ok"),
        scheduleActions(s),
      ]),
      "No schedules.",
    ),
  ];
}
function lastFireCell(f) {
  if (!f) return "—";
  const parts = [timeCell(f.firedAt ?? f.nominalAt)];
  if (f.lagMs !== undefined && f.lagMs !== null) parts.push(` · lag ${duration(f.lagMs)}`);
  if (f.jobId) parts.push(" · ", link(`#/jobs/${encodeURIComponent(f.jobId)}`, `job ${f.jobId}`));
  if (f.jobState) parts.push(" ", stateBadge(f.jobState));
  return parts;
}
function scheduleActions(s) {
  return [
    s.paused ? action("cron.resume", "Resume", { name: s.name })
      : action("cron.pause", "Pause", { name: s.name }, { confirm: `Pause schedule ${s.name}?`, note: "note" }),
    " ",
    action("cron.trigger", "Trigger", { name: s.name }, { confirm: `Fire schedule ${s.name} now?` }),
  ];
}

async function scheduleView({ name }) {
  const s = await rpc("cron.get", { name });
  // The last fire's job and how it went (gone when pruned after its retention).
  if (s.lastFire?.jobId) {
    const job = await rpc("jobs.get", { id: s.lastFire.jobId }).catch(() => null);
    s.lastFire = { ...s.lastFire, jobState: job?.state ?? "pruned" };
  }
  let previous = null;
  const fires = (s.nextFires || []).map((iso) => {
    const off = zoneOffset(iso, s.timezone || "UTC");
    const changed = previous !== null && off !== previous;
    previous = off;
    return [fmtTime(iso, s.timezone || "UTC"), fmtTime(iso, viewerZone), changed ? h("span", { class: "dst" }, `offset changes to ${off}`) : off];
  });
  return [
    h("h1", {}, `Schedule ${s.name} `, s.paused ? badge("paused", "warn") : badge("active", "ok")),
    h("div", { class: "actions" }, scheduleActions(s), can("cron.upsert") ? link(`#/schedules/${encodeURIComponent(s.name)}/edit`, "Edit") : null),
    kv([
      ["When", s.description], ["Expression", s.expression ?? `every ${s.everyMs} ms`], ["Time zone", s.timezone ?? "UTC"],
      s.paused ? ["Paused", `${fmtTime(s.pausedAt)}${s.pausedNote ? ` — ${s.pausedNote}` : ""}`] : null,
      ["Overlap", s.overlap], ["Missed", `${s.missed} (window ${duration(s.missedWindowMs)})`],
      ["Runs", `${s.stats?.runs ?? 0} fired · ${s.stats?.skippedOverlap ?? 0} skipped · ${s.stats?.missed ?? 0} missed`],
      ["Last fire", lastFireCell(s.lastFire)],
    ]),
    h("h2", {}, "Target"), pre(s.target),
    h("h2", {}, "Next fires"),
    table([`In ${s.timezone ?? "UTC"}`, `In your zone (${viewerZone})`, "UTC offset"], fires, "No upcoming fires."),
  ];
}

async function scheduleEdit({ name }) {
  const s = name ? await rpc("cron.get", { name }) : null;
  const field = (id, value, attrs = {}) => h("input", { id, name: id, value: value ?? "", autocomplete: "off", ...attrs });
  const f = {
    name: field("name", s?.name, { required: true, readonly: !!s }),
    expression: field("expression", s?.expression ?? "*/5 * * * *"),
    timezone: field("timezone", s?.timezone ?? viewerZone),
    target: h("textarea", { id: "target", name: "target", rows: 5, cols: 50 },
      JSON.stringify(s?.target ?? { job: { queue: "default", kind: "" } }, null, 2)),
  };
  const preview = h("div", { "data-testid": "preview", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert" });
  let timer = null;
  const update = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        const p = await rpc("cron.preview", { expression: f.expression.value, timezone: f.timezone.value || undefined, count: 5 });
        preview.replaceChildren(h("p", {}, p.description), h("ul", {}, p.fires.map((x) => h("li", {}, `${fmtTime(x, p.timezone)} · ${fmtTime(x, viewerZone)}`))));
      } catch (e) {
        preview.replaceChildren(h("p", { class: "error" }, e.data?.detail ? `${e.message}: ${e.data.detail}` : e.message));
      }
    }, 250);
  };
  f.expression.addEventListener("input", update);
  f.timezone.addEventListener("input", update);
  update();
  const form = h(
    "form",
    {
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const target = JSON.parse(f.target.value);
          await rpc("cron.upsert", { name: f.name.value.trim(), expression: f.expression.value.trim(), timezone: f.timezone.value.trim() || undefined, target });
          location.hash = `#/schedules/${encodeURIComponent(f.name.value.trim())}`;
        } catch (e) {
          error.textContent = e.data?.detail ? `${e.message}: ${e.data.detail}` : e.message;
        }
      },
    },
    h("div", { class: "filters" }, h("label", { for: "name" }, "Name", f.name), h("label", { for: "expression" }, "Cron expression", f.expression),
      h("label", { for: "timezone" }, "Time zone", f.timezone)),
    h("label", { for: "target" }, "Target (JSON: {job: {queue, kind, payload}} or {webhook: {...}})", f.target),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, s ? "Save" : "Create")),
  );
  return [h("h1", {}, s ? `Edit ${s.name}` : "New schedule"), form, error, h("h2", {}, "Preview"), preview];
}

async function locksView() {
  const locks = await listAll("locks.list", "locks");
  return [
    h("h1", {}, "Locks"),
    table(
      ["Name", "State", "Holder", "#Fencing token", "Expires", "#Waiters", "#Grants", "#Waits", "#Expired unreleased"],
      locks.map((l) => [
        l.name, l.held ? badge("held", "ok") : badge("free"), holderCell(l.holder), l.fencingToken ?? "—",
        l.held ? timeCell(l.expiresAt) : "—", l.waiters ?? 0, l.stats?.grants ?? 0, l.stats?.waits ?? 0,
        l.stats?.expiriesWithoutRelease ?? 0,
      ]),
      "No locks.",
    ),
  ];
}
/** A holder that names a job (`job:ID`) or a schedule (`cron:NAME`) links to it. */
function holderCell(holder) {
  if (!holder) return "—";
  const m = /^(job|cron|schedule):(.+)$/.exec(holder);
  if (!m) return holder;
  return m[1] === "job" ? link(`#/jobs/${encodeURIComponent(m[2])}`, holder) : link(`#/schedules/${encodeURIComponent(m[2])}`, holder);
}

const pct = (x) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`);
/** enabled (green), failing (red: its last attempts failed), disabled (solid red). */
const endpointState = (e) => stateBadge(e.health?.state ?? "unknown");
function endpointActions(e) {
  return [
    e.health?.state === "disabled" ? action("webhooks.enable", "Enable", { id: e.id }, { confirm: `Enable endpoint ${e.id} again?` }) : null,
    action("webhooks.test", "Send test", { id: e.id }, {
      after: (r) => toast(`Test: ${r.verified ? "verified" : `failed (${r.errorKind ?? r.status ?? "?"})`}`, !r.verified),
    }),
    action("webhooks.recover", "Recover", { endpointId: e.id }, { confirm: `Re-send every failed delivery of endpoint ${e.id}?` }),
    action("webhooks.rotateSecret", "Rotate secret", { id: e.id }, {
      confirm: `Rotate the signing secret of endpoint ${e.id}? The old one keeps working for a grace period.`, danger: true,
      after: (r) => showSecret(r.secret),
    }),
  ].filter(Boolean).flatMap((b) => [b, " "]);
}
function showSecret(secret) {
  document.getElementById("confirm-text").textContent = `New secret (shown once): ${secret ?? "(see webhooks.get)"}`;
  document.getElementById("confirm-note-label").hidden = true;
  document.getElementById("confirm-ok").textContent = "Done";
  dialog.showModal();
}

async function webhooksView() {
  const endpoints = await listAll("webhooks.list", "endpoints");
  return [
    h("h1", {}, "Webhooks"),
    table(
      ["Id", "URL", "State", "Last success", "Last failure", "Failing since", "#24 h success", "#p95", "#Pending", ""],
      endpoints.map((e) => {
        const hl = e.health || {};
        return [
          link(`#/webhooks/${encodeURIComponent(e.id)}`, e.id), e.url, endpointState(e), timeCell(hl.lastSuccessAt), timeCell(hl.lastFailureAt),
          timeCell(hl.failingSince), pct(hl.successRate24h), hl.latencyP95Ms != null ? `${hl.latencyP95Ms} ms` : "—",
          hl.pendingDeliveries ?? 0, endpointActions(e),
        ];
      }),
      "No endpoints.",
    ),
  ];
}

async function webhookView({ id, params }) {
  const req = { endpointId: id, limit: 50 };
  if (params.state) req.state = params.state;
  if (params.cursor) req.cursor = params.cursor;
  const [e, page] = await Promise.all([rpc("webhooks.get", { id }), rpc("webhooks.deliveries", req)]);
  const next = page.nextCursor ?? page.cursor ?? null;
  const hl = e.health || {};
  return [
    h("h1", {}, `Endpoint ${e.id} `, endpointState(e)),
    h("div", { class: "actions" }, endpointActions(e)),
    kv([
      ["URL", e.url], ["Description", e.description], ["Events", (e.events || ["all"]).join(", ")],
      ["Last success", fmtTime(hl.lastSuccessAt)], ["Last failure", fmtTime(hl.lastFailureAt)], ["Failing since", fmtTime(hl.failingSince)],
      ["Consecutive failures", hl.consecutiveFailures], ["Success 1 h / 24 h", `${pct(hl.successRate1h)} / ${pct(hl.successRate24h)}`],
      ["Latency p50 / p95", `${hl.latencyP50Ms ?? "—"} / ${hl.latencyP95Ms ?? "—"} ms`], ["Pending", hl.pendingDeliveries ?? 0],
    ]),
    h("h2", {}, "Deliveries"),
    table(
      ["Id", "Event", "State", "#Attempts", "Created", "Finished", "Last error", ""],
      page.deliveries.map((d) => [
        d.id, d.event, stateBadge(d.state), d.attempts, timeCell(d.createdAt), timeCell(d.finishedAt),
        [d.lastError ?? "—", attemptLog(d.attemptLog)],
        d.state === "pending" ? null : action("webhooks.redeliver", "Redeliver", { deliveryId: d.id }, { confirm: `Send delivery ${d.id} again?` }),
      ]),
      "No deliveries.",
    ),
    next ? h("div", { class: "pager" }, link(hashWith(`#/webhooks/${encodeURIComponent(id)}`, { ...params, cursor: next }), "Next page")) : null,
  ];
}
function attemptLog(log) {
  if (!log?.length) return null;
  return h(
    "details",
    {},
    h("summary", {}, `${log.length} attempt(s)`),
    table(
      ["#", "At", "Status", "Error kind", "#Latency", "Response"],
      log.map((a) => [a.attempt, fmtTime(a.at), a.status ?? "—", a.errorKind ?? "—", a.latencyMs != null ? `${a.latencyMs} ms` : "—",
        a.responseBody ? h("pre", {}, a.responseBody) : "—"]),
    ),
  );
}

// ---- Live updates ----------------------------------------------------------------------------------

// Follows `GET /events` (Server-Sent Events, read with fetch so the token goes in a header): an event
// refreshes the view shortly after; a dropped stream is opened again 5 s later.
let refreshTimer = null;
function soon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 300);
}
// What changes the views beyond counts (counts are polled: job.completed can come thousands a second).
const STREAM_TYPES = "job.failed,job.dead,job.cancelled,job.rescued,schedule.*,lock.*,endpoint.*,delivery.*";
async function follow() {
  if (!session.role) return setTimeout(follow, 2000);
  try {
    const headers = { Accept: "text/event-stream" };
    if (session.token) headers.Authorization = `Bearer ${session.token}`;
    const res = await fetch(`/events?events=${STREAM_TYPES}`, { headers });
    if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let at;
      while ((at = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        if (block.split("\n").some((line) => line.startsWith("data:"))) soon();
      }
    }
  } catch (e) {
    // fall through to polling and a later retry
  }
  setTimeout(follow, 5000);
}
// Counts, ages and times ("3 s ago") move without events: a live view is also redrawn every 5 s.
setInterval(refresh, 5000);

window.addEventListener("hashchange", () => route(true));
(async () => {
  await hello();
  route(false);
  follow();
})();
