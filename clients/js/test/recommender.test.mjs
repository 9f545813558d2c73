// EdgeRecommender without a browser: a stand-in ONNX Runtime whose encoder returns a fixed user
// vector, an in-memory bundle behind a fake fetch. Loading checks, masking, the popular
// fallback, added items (kept in storage, fetched page by page, reset after a server restart).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import { loadBundle } from "../src/liverec-edge.js";

const N = 6;
const D = 4;
// fp32 rows: item i's row is e_{i mod D} * i, so with u = (1, 1, 1, 1) item i scores i
const rows = new Float32Array(N * D);
for (let i = 1; i <= N; i++) rows[(i - 1) * D + (i % D)] = i;

function files() {
  const catalogue = JSON.stringify({ ids: ["a", "b", "c", "d", "e", "f"],
    titles: ["A", "B", "C", "D", "E", "F"], popular: [3, 1, 2] });
  return { "encoder.onnx": new Uint8Array([1, 2, 3]), "items.rows.f32": new Uint8Array(rows.buffer),
    "catalogue.json": new TextEncoder().encode(catalogue) };
}

function manifestOf(contents) {
  const entries = Object.fromEntries(Object.entries(contents).map(([n, b]) => [n, {
    bytes: b.byteLength, sha256: createHash("sha256").update(b).digest("hex") }]));
  return { format: "liverec-web/1", version: "v1", source: { model_version: "m@1" },
    model: { max_len: 3 }, encoder: { file: "encoder.onnx" }, catalogue: "catalogue.json",
    table: { kind: "fp32", n_items: N, dim: D, files: { rows: "items.rows.f32" } },
    files: entries };
}

const seen = [];
const fakeOrt = {
  env: { wasm: {} },
  Tensor: class { constructor(type, data, dims) { Object.assign(this, { type, data, dims }); } },
  InferenceSession: { create: async () => ({
    run: async (feeds) => {
      seen.push(Array.from(feeds.seqs.data, Number));
      return { user: { data: new Float32Array(D).fill(1) } };
    } }) },
};

function fetchFrom(map, calls = []) {
  return async (url) => {
    const u = new URL(url);
    calls.push(u.pathname + u.search);
    const body = map(u);
    if (body === undefined) return { ok: false, status: 404, statusText: "Not Found" };
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
    return { ok: true, status: 200, arrayBuffer: async () => bytes.slice().buffer,
      json: async () => JSON.parse(new TextDecoder().decode(bytes)) };
  };
}

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k) };
}

async function load(storage = null, contents = files(), manifest = manifestOf(contents),
  extra = () => undefined) {
  const fetch = fetchFrom((u) => {
    const name = u.pathname.replace("/b/", "");
    if (name === "manifest.json") return JSON.stringify(manifest);
    return contents[name] ?? extra(u);
  });
  return loadBundle("http://x/b/", { ort: fakeOrt, fetch, storage });
}

test("recommend: best first, history masked, window of the model's last items", async () => {
  const rec = await load();
  seen.length = 0;
  const r = await rec.recommend(["a", "nope", "f", "b", "c"], { k: 3 });
  assert.deepEqual(r.items.map((i) => i.item_id), ["e", "d"]);
  assert.deepEqual(r.items.map((i) => i.title), ["E", "D"]);
  assert.deepEqual(r.unknown, ["nope"]);
  assert.deepEqual(seen, [[6, 2, 3]]); // max_len 3: the last three known items
  assert.equal(r.fallback, null);
});

test("an empty history gets the popular unseen items", async () => {
  const rec = await load();
  const r = await rec.recommend(["zzz"], { k: 2 });
  assert.deepEqual(r.items.map((i) => i.item_id), ["c", "a"]);
  assert.equal(r.fallback, "popular");
});

test("a file that does not match the manifest is refused, by name", async () => {
  const contents = files();
  const manifest = manifestOf(contents);
  contents["items.rows.f32"] = new Uint8Array(contents["items.rows.f32"]);
  contents["items.rows.f32"][0] ^= 1;
  await assert.rejects(load(null, contents, manifest), /items.rows.f32: sha256/);
  await assert.rejects(load(null, files(), { ...manifest, format: "x" }), /not a liverec web/);
});

test("added items: scored, masked, kept in storage across loads", async () => {
  const storage = memoryStorage();
  const rec = await load(storage);
  assert.equal(rec.addItems([{ item_id: "g", title: "G", vector: [9, 9, 9, 9] },
    { item_id: "a", title: "dup", vector: [0, 0, 0, 0] }]), 1);
  assert.equal(rec.rows, N + 2);
  assert.deepEqual((await rec.recommend(["a"], { k: 2 })).items.map((i) => i.item_id),
    ["g", "f"]);
  assert.deepEqual((await rec.recommend(["a", "g"], { k: 1 })).items.map((i) => i.item_id),
    ["f"]);
  const again = await load(storage);
  assert.equal(again.rows, N + 2);
  assert.equal(again.title("g"), "G");
});

test("update: only rows past this copy's, page by page; a foreign model is refused", async () => {
  const server = [7, 8, 9].map((index) => ({ index, item_id: `n${index}`, title: "",
    vector: [index, 0, 0, 0] }));
  const calls = [];
  const fetch = fetchFrom((u) => {
    const since = Number(u.searchParams.get("since"));
    return JSON.stringify({ model_version: "m@1", n_model: N, n_rows: 10,
      items: server.filter((it) => it.index >= since).slice(0, 2) });
  }, calls);
  const rec = await load(memoryStorage());
  assert.equal(await rec.update("http://x/v1/edge/items", { fetch }), 3);
  assert.deepEqual(calls, ["/v1/edge/items?since=7", "/v1/edge/items?since=9"]);
  assert.equal(await rec.update("http://x/v1/edge/items", { fetch }), 0);
  const other = fetchFrom(() => JSON.stringify({ model_version: "m@2", n_model: N, n_rows: 7,
    items: [] }));
  await assert.rejects(rec.update("http://x/v1/edge/items", { fetch: other }), /reload the bundle/);
});

test("update after the server lost its additions starts them over", async () => {
  const rec = await load(memoryStorage());
  rec.addItems([{ item_id: "old1", title: "", vector: [1, 1, 1, 1] },
    { item_id: "old2", title: "", vector: [1, 1, 1, 1] }]);
  const fetch = fetchFrom(() => JSON.stringify({ model_version: "m@1", n_model: N, n_rows: 8,
    items: [{ index: 7, item_id: "new", title: "", vector: [2, 2, 2, 2] }] }));
  assert.equal(await rec.update("http://x/v1/edge/items", { fetch }), 1);
  assert.deepEqual(rec.ids.slice(N), ["new"]);
  assert.equal(rec.lookup.has("old1"), false);
});
