// liverec dashboard: plain JavaScript against the service's own JSON API (no build step).
"use strict";

const K = 10;
const POLL_MS = Number(new URLSearchParams(location.search).get("poll")) || 2000;
const RECENT_KEY = "liverec.recentUsers";
const $ = (id) => document.getElementById(id);
const titles = new Map(); // item id -> title ("" when the catalogue has none)
let user = null;
let loading = 0; // increases per load; a late answer for an older load is dropped
let rules = []; // the deployment's rules (GET /v1/rerank)
const chosen = new Map(); // rule name -> on/off as ticked on this page
// a rule the deployment does not set, switched on here, with this request value
const TRY = { category_caps: ["max_per_category", 2], mmr: ["mmr_lambda", 0.3],
  calibration: ["calibration_lambda", 0.3], exposure: ["max_head_share", 0.5] };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = $("api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  const res = await fetch(path, { ...options, headers });
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) {
    const err = new Error((body && body.detail) || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

function say(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

const fmt = (x, digits = 1) => (x === null || x === undefined ? "–" : x.toFixed(digits));
const itemName = (id) => titles.get(id) || `item ${id}`;

async function loadTitles(ids) {
  const todo = [...new Set(ids)].filter((id) => !titles.has(id));
  await Promise.all(todo.map(async (id) => {
    try {
      titles.set(id, (await api(`/v1/items/${encodeURIComponent(id)}`)).title || "");
    } catch (e) {
      titles.set(id, "");
    }
  }));
}

// ---- users -------------------------------------------------------------------------------

function recentUsers() {
  try { return JSON.parse(localStorage.getItem(RECENT_KEY)) || []; } catch (e) { return []; }
}

function showRecent() {
  $("recent-users").replaceChildren(...recentUsers().map((u) => el("option", { value: u })));
}

function showActive(users) {
  $("active-box").hidden = users.length === 0;
  $("active-users").replaceChildren(...users.map((u) => el("button", {
    type: "button", class: u === user ? "current" : "", onclick: () => openUser(u),
  }, u)));
}

function remember(id) {
  const list = [id, ...recentUsers().filter((u) => u !== id)].slice(0, 20);
  localStorage.setItem(RECENT_KEY, JSON.stringify(list));
  showRecent();
}

async function openUser(id) {
  user = id;
  $("user-input").value = id;
  remember(id);
  $("explain").hidden = true;
  say("");
  await refresh();
}

// ---- re-ranking rules ------------------------------------------------------------------------

function ruleParams(q) {
  for (const r of rules) {
    const on = chosen.has(r.name) ? chosen.get(r.name) : r.on;
    if (r.on && !on) q.append("rules_off", r.name);
    else if (!r.on && on && TRY[r.name]) q.set(...TRY[r.name]);
  }
  return q;
}

async function loadRules() {
  let d;
  try { d = await api("/v1/rerank"); } catch (e) { return; }
  rules = d.rules;
  $("rules").replaceChildren(...rules.map((r) => {
    const on = chosen.has(r.name) ? chosen.get(r.name) : r.on;
    const fixed = r.locked || (!r.on && !TRY[r.name]);
    const box = el("input", { type: "checkbox", checked: on, disabled: fixed,
      onchange: (ev) => { chosen.set(r.name, ev.target.checked); if (user) refresh(); } });
    box.setAttribute("data-rule", r.name);
    const tried = TRY[r.name] ? TRY[r.name].join(" ") : "";
    const detail = r.on ? r.detail : (tried ? (on ? `on here: ${tried}` : `off (tick: ${tried})`)
      : "not set");
    return el("li", { class: r.locked ? "locked" : "" }, el("label", {}, box,
      el("span", {}, r.name.replace("_", " ")),
      el("span", { class: "detail" }, r.locked ? `${detail} · always` : detail)));
  }));
  const relevance = d.relevance === "probability" ? "model probability" : "min-max score";
  const order = d.order === "score" ? "listed by score" : "listed as picked";
  $("rules-hidden").textContent = `${d.hidden_items} items hidden (flagged or denied); ` +
    `the stage re-ranks the top ${d.candidates} (relevance: ${relevance}; ${order}).`;
}

function renderApplied(info) {
  const node = $("rules-applied");
  node.setAttribute("data-applied", info ? info.applied.join(",") : "");
  if (!info) { node.textContent = ""; return; }
  const values = [["mmr_lambda", "MMR λ"], ["calibration_lambda", "calibration λ"],
    ["exposure_penalty", "popularity penalty"], ["max_head_share", "head share ≤"],
    ["max_per_category", "per category ≤"]]
    .filter(([k]) => info[k] !== null && info[k] !== undefined)
    .map(([k, label]) => `${label} ${info[k]}`);
  node.textContent = `Rules applied: ${info.applied.join(", ")}` +
    (values.length ? ` (${values.join(", ")})` : "") +
    (info.switched_off.length ? `; switched off: ${info.switched_off.join(", ")}` : "");
}

async function refresh(fresh = null) {
  const mine = ++loading;
  const q = ruleParams(new URLSearchParams({ user_id: user, k: K, explain: "true" }));
  try {
    const [history, recs] = await Promise.all([
      api(`/v1/users/${encodeURIComponent(user)}`).catch((e) => {
        if (e.status === 404) return { history: [], events_total: 0 };
        throw e;
      }),
      api(`/v1/recommend?${q}`),
    ]);
    const ids = history.history.map((h) => h.item_id);
    await loadTitles([...ids.slice(-50), ...recs.items.map((i) => i.item_id)]);
    if (mine !== loading) return;
    recs.items.forEach((i) => titles.set(i.item_id, i.title || titles.get(i.item_id) || ""));
    renderHistory(history, fresh);
    renderRecs(recs);
    renderApplied(recs.rerank);
    loadRules();
  } catch (e) {
    if (mine === loading) say(`Could not load ${user}: ${e.message}`);
  }
}

function renderHistory(history, fresh) {
  const events = history.history.slice().reverse(); // newest first
  $("history-count").textContent = `(${history.events_total} events)`;
  $("history-empty").hidden = events.length > 0;
  $("history").replaceChildren(...events.slice(0, 50).map((h, i) => el("li", {
    class: i === 0 && h.item_id === fresh ? "fresh" : "",
    title: `${h.item_id} at ${new Date(h.timestamp * 1000).toLocaleString()}`,
  }, itemName(h.item_id))));
}

function renderRecs(recs) {
  const list = $("recs");
  list.setAttribute("data-user", recs.user_id);
  list.setAttribute("data-events-seen", String(recs.events_seen));
  const source = recs.fallback === "popular" ? "popular items (no history yet)" : "personal";
  $("recs-meta").textContent = `for ${recs.user_id}: ${source}`;
  list.replaceChildren(...recs.items.map((item, r) => el("li", { "data-item": item.item_id },
    el("span", { class: "rank" }, String(r + 1)),
    el("button", { class: "item", type: "button", title: "record a view of this item",
                   onclick: () => view(item.item_id) },
       itemName(item.item_id),
       el("span", { class: "meta" }, `  ${item.item_id} · score ${item.score.toFixed(3)}`)),
    el("button", { class: "why secondary", type: "button",
                   onclick: () => why(item.item_id) }, "Why?"),
    el("p", { class: "reason" }, item.reason || ""))));
}

async function view(itemId) {
  try {
    await api("/v1/events", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: user, item_id: itemId, type: "view" }),
    });
  } catch (e) {
    say(e.status === 401 ? "This service needs an API key for events (see “API key”)."
      : `Could not record the view: ${e.message}`);
    if (e.status === 401) $("key-box").open = true;
    return;
  }
  $("explain").hidden = true;
  await refresh(itemId);
}

// ---- explanations ---------------------------------------------------------------------------

async function why(itemId) {
  let e;
  try {
    e = await api(`/v1/explain?${new URLSearchParams({ user_id: user, item_id: itemId })}`);
  } catch (err) {
    say(err.status === 404 && user ? `Nothing to explain yet: ${err.message}` : err.message);
    return;
  }
  $("explain-title").textContent = e.title || `item ${e.item_id}`;
  $("explain-reason").textContent = e.reason;
  const top = Math.max(1e-9, ...e.history.map((h) => Math.abs(h.drop)));
  const rows = e.history.slice().reverse().slice(0, 15).map((h) => {
    const width = `${(50 * Math.abs(h.drop)) / top}%`;
    return el("li", {},
      el("span", { class: "name", title: `${h.item_id} ${h.title}` }, h.title || `item ${h.item_id}`),
      el("span", { class: "track" },
         el("span", { class: `bar ${h.drop >= 0 ? "up" : "down"}`, style: `width: ${width}` })),
      el("span", { class: "value" }, (h.drop >= 0 ? "+" : "") + h.drop.toFixed(3)));
  });
  $("explain-bars").replaceChildren(...rows);
  $("explain-shared").textContent = e.shared_attributes.length
    ? "Shares " + e.shared_attributes.map((s) => `${s.label} (with ${s.items.length} viewed)`)
      .join(", ") : "No telling attribute shared with the history.";
  $("explain-similar").textContent = "Most similar viewed items: " + e.similar
    .map((s) => `${s.title || "item " + s.item_id} (${s.similarity.toFixed(2)})`).join(", ");
  $("explain").hidden = false;
}

// ---- live figures and model card --------------------------------------------------------

async function pollStats() {
  try {
    const s = await api("/v1/stats");
    const w = s.window;
    $("stat-rps").textContent = fmt(w.api.requests_per_s);
    $("stat-p50").textContent = w.recommend.p50_ms === null ? "–" : `${fmt(w.recommend.p50_ms, 2)} ms`;
    $("stat-p99").textContent = w.recommend.p99_ms === null ? "–" : `${fmt(w.recommend.p99_ms, 2)} ms`;
    const hit = s.total.cache_hit_rate;
    $("stat-cache").textContent = hit === null ? "–" : `${(100 * hit).toFixed(0)}%`;
    $("stat-events").textContent = String(s.events);
    $("model-version").textContent = s.model_version;
    showActive(s.recent_users || []);
  } catch (e) {
    $("stat-rps").textContent = e.status === 401 || e.status === 403 ? "key needed" : "offline";
  }
}

function table(node, head, rows) {
  node.replaceChildren(
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))));
}

async function loadModel() {
  let m;
  try { m = await api("/v1/model"); } catch (e) { return; }
  const facts = [["version", m.model_version], ["data", m.data || "–"],
    ...Object.entries(m.model).map(([k, v]) => [k, String(v)])];
  if (m.metrics && m.metrics.training) {
    facts.push(["best epoch", String(m.metrics.training.best_epoch)],
               ["training", `${fmt(m.metrics.training.wall_s, 1)} s`]);
  }
  $("model-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  if (m.metrics && m.metrics.test) {
    const ks = Object.keys(m.metrics.test).filter((k) => /^(hr|ndcg)@\d+$/.test(k))
      .sort((a, b) => Number(a.split("@")[1]) - Number(b.split("@")[1]) || a.localeCompare(b));
    const rows = [["this model", m.metrics.test],
                  ...Object.entries(m.metrics.baselines)]
      .map(([name, r]) => [name, ...ks.map((k) => (r[k] === undefined ? "–" : r[k].toFixed(4)))]);
    table($("metrics"), ["model", ...ks.map((k) => k.toUpperCase())], rows);
  }
  if (m.variants) {
    const rows = Object.entries(m.variants).map(([n, r]) => [n, fmt(r["ndcg@20"], 4),
      `${fmt(100 * r["ndcg@20_rel"], 1)}%`, `${fmt(r.weight_bytes / 1e6, 2)} MB`,
      `${fmt(r.smaller_x, 2)}x`, `${fmt(r.p50_ms, 2)} ms`]);
    table($("variants"), ["variant", "NDCG@20", "rel.", "size", "smaller", "p50"], rows);
    $("variants-box").hidden = false;
  }
  if (m.training_curve) {
    $("curve").src = m.training_curve;
    $("curve-box").hidden = false;
  }
}

// ---- wiring ----------------------------------------------------------------------------------

$("user-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = $("user-input").value.trim();
  if (id) openUser(id);
});
$("new-user").addEventListener("click", () => {
  openUser(`visitor-${Math.random().toString(36).slice(2, 8)}`);
});
showRecent();
loadRules();
loadModel();
pollStats();
setInterval(pollStats, POLL_MS);
