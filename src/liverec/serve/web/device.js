// The dashboard's "on this device" mode: the served run's web bundle (GET /edge/...) loaded
// into this browser, a history kept in localStorage, the list computed here beside the
// server's list for the same history. Switched on by the header button or ?device=1; nothing
// (not even the 14 MB WebAssembly runtime) is loaded before.
const K = 10;
const $ = (id) => document.getElementById(id);
const state = { rec: null, mod: null, history: null, times: [], rendering: 0 };

function node(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") n.className = v;
    else if (k.startsWith("data-")) n.setAttribute(k, v);
    else n[k] = v;
  }
  n.append(...children);
  return n;
}

function tell(text) {
  $("device-message").textContent = text || "";
  $("device-message").hidden = !text;
}

const median = (xs) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : null;
};

function listItems(items, other, popular = false) {
  return items.map((it, r) => node("li", { "data-item": it.item_id,
    class: other && !other.has(it.item_id) ? "differs" : "" },
  node("span", { class: "rank" }, String(r + 1)),
  node("button", { class: "item", type: "button", title: "add to this device's history",
    onclick: () => view(it.item_id) },
  it.title || `item ${it.item_id}`,
  node("span", { class: "meta" },
    `  ${it.item_id} · ${popular ? "popular" : `score ${it.score.toFixed(3)}`}`))));
}

async function start() {
  $("device-panel").hidden = false;
  $("device-toggle").classList.remove("secondary");
  if (state.rec) return;
  try {
    state.mod = await import("/edge/runtime/liverec-edge.js");
    state.rec = await state.mod.loadBundle("/edge/");
  } catch (e) {
    $("device-status").textContent = "";
    tell(`Could not load the web bundle: ${e.message}. Build it with ` +
         "'liverec export-web RUN_DIR' (the service serves RUN_DIR/web).");
    return;
  }
  const rec = state.rec;
  state.history = new state.mod.HistoryStore(localStorage, `liverec.edge.history`);
  const m = rec.manifest;
  $("device-status").textContent = `bundle ${m.version} of ${m.source.model_version} · ` +
    `${(m.total.gzip_bytes / 1e6).toFixed(2)} MB gzip · encoder ${m.encoder.weights}, ` +
    `table ${m.table.kind} · loaded in ${rec.loadMs.toFixed(0)} ms`;
  $("device-status").setAttribute("data-version", m.version);
  window.liverecEdge = { rec, mod: state.mod, history: state.history }; // tests, the console
  showAdded();
  await render();
}

function showAdded() {
  const n = state.rec.rows - state.rec.nModel - 1;
  $("device-added").textContent = n ? `${n} added since the bundle was built` : "";
  $("device-added").setAttribute("data-added", String(n));
}

async function render() {
  const rec = state.rec;
  const mine = ++state.rendering;
  const ids = state.history.list();
  const r = await rec.recommend(ids, { k: K });
  if (mine !== state.rendering) return;
  state.times.push(r.ms);
  $("device-count").textContent = `(${ids.length})`;
  $("device-history").replaceChildren(...ids.slice().reverse().slice(0, 50)
    .map((id) => node("li", { title: id }, rec.title(id) || `item ${id}`)));
  $("device-recs").replaceChildren(...listItems(r.items, null, r.fallback === "popular"));
  $("device-recs").setAttribute("data-history-length", String(ids.length));
  $("device-ms").textContent = `${r.ms.toFixed(1)} ms, p50 ${median(state.times).toFixed(1)} ms ` +
    `over ${state.times.length}` + (r.fallback ? " · popular (no history yet)" : "");
  compare(ids, r.items, mine);
}

async function compare(ids, mineItems, mine) {
  const box = $("server-recs");
  if (!$("device-compare").checked) {
    box.replaceChildren();
    $("device-agree").textContent = "not compared: the history stayed on this device";
    return;
  }
  const t0 = performance.now();
  let body;
  try {
    const res = await fetch("/v1/recommend", { method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ history: ids, k: K, unknown: "ignore" }) });
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    body = await res.json();
  } catch (e) {
    if (mine !== state.rendering) return;
    box.replaceChildren();
    box.setAttribute("data-history-length", "");
    $("server-ms").textContent = "";
    $("device-agree").textContent = `server unreachable (${e.message}); ` +
      "the list on the left was computed here";
    return;
  }
  if (mine !== state.rendering) return;
  const here = new Set(mineItems.map((i) => i.item_id));
  const there = body.items.map((i) => ({ ...i, title: state.rec.title(i.item_id) }));
  const same = there.filter((i) => here.has(i.item_id)).length;
  $("server-ms").textContent = `${(performance.now() - t0).toFixed(1)} ms round trip`;
  $("device-agree").textContent = `${same} of ${there.length} items in common`;
  box.replaceChildren(...listItems(there, here, body.fallback === "popular"));
  box.setAttribute("data-history-length", String(ids.length));
}

async function view(itemId) {
  state.history.add(itemId);
  await render();
}

$("device-toggle").addEventListener("click", () => {
  if ($("device-panel").hidden) start();
  else {
    $("device-panel").hidden = true;
    $("device-toggle").classList.add("secondary");
  }
});
$("device-clear").addEventListener("click", async () => {
  if (!state.rec) return;
  state.history.clear();
  await render();
});
$("device-compare").addEventListener("change", () => state.rec && render());
$("device-update").addEventListener("click", async () => {
  if (!state.rec) return;
  try {
    const n = await state.rec.update("/v1/edge/items");
    tell(n ? "" : "No new items.");
    showAdded();
    await render();
  } catch (e) {
    tell(`Catalogue update failed: ${e.message}`);
  }
});
if (new URLSearchParams(location.search).get("device") === "1") start();
