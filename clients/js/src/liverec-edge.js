// liverec edge client: load a web bundle (`liverec export-web`), keep the history on the
// device, encode it with ONNX Runtime (WebAssembly, one thread), score the catalogue against
// the compact item table, mask what was seen and return the top k with titles. The page asks
// the server for nothing but the bundle's files (and, when told to, the catalogue's additions).
//
//   import { loadBundle, HistoryStore } from "/edge/runtime/liverec-edge.js";
//   const rec = await loadBundle("/edge/");
//   const history = new HistoryStore();
//   history.add("B004756YJA");
//   const { items, ms } = await rec.recommend(history.list(), { k: 10 });
"use strict";

import { FORMAT, ItemTable, checkFile, topK, windowOf } from "./core.js";

export { HistoryStore, ItemTable, overlapAtK, topK, windowOf } from "./core.js";

const now = () => globalThis.performance.now();

async function fetchBuffer(fetchFn, url) {
  const res = await fetchFn(url);
  if (!res.ok) throw new Error(`${url}: ${res.status} ${res.statusText}`);
  return res.arrayBuffer();
}

/**
 * Load a bundle: the manifest, then every file it lists (sizes and sha256 checked), then an
 * ONNX Runtime session on the encoder.
 *
 * @param {string} baseUrl the bundle's folder ("/edge/", "https://.../bundle/")
 * @param {object} [options]
 * @param {object} [options.ort] the onnxruntime-web module (default: the copy beside this file)
 * @param {Function} [options.fetch] fetch implementation (default: globalThis.fetch)
 * @param {Storage} [options.storage] where added items are kept between visits (default:
 *   localStorage when there is one; null: nowhere)
 * @returns {Promise<EdgeRecommender>}
 */
export async function loadBundle(baseUrl, options = {}) {
  const fetchFn = options.fetch || globalThis.fetch.bind(globalThis);
  const base = new URL(baseUrl, globalThis.location ? globalThis.location.href : undefined);
  const t0 = now();
  const manifestBuf = await fetchBuffer(fetchFn, new URL("manifest.json", base));
  const manifest = JSON.parse(new TextDecoder().decode(manifestBuf));
  if (manifest.format !== FORMAT) {
    throw new Error(`not a liverec web bundle: format ${manifest.format}, expected ${FORMAT}`);
  }
  const names = Object.keys(manifest.files);
  const buffers = Object.fromEntries(await Promise.all(names.map(async (name) => {
    const buf = await fetchBuffer(fetchFn, new URL(name, base));
    await checkFile(name, buf, manifest.files[name]);
    return [name, buf];
  })));
  let ort = options.ort;
  if (!ort) {
    ort = await import("./ort.wasm.min.mjs");
    ort.env.wasm.wasmPaths = new URL("./", import.meta.url).href; // no CDN: beside this file
  }
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  const session = await ort.InferenceSession.create(
    new Uint8Array(buffers[manifest.encoder.file]),
    { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  const catalogue = JSON.parse(new TextDecoder().decode(buffers[manifest.catalogue]));
  const table = new ItemTable(manifest.table, buffers);
  const storage = options.storage !== undefined ? options.storage
    : (globalThis.localStorage || null);
  const rec = new EdgeRecommender(manifest, table, catalogue, session, ort, storage);
  rec.loadMs = now() - t0;
  return rec;
}

/** Recommendations computed on the device from a loaded bundle. */
export class EdgeRecommender {
  constructor(manifest, table, catalogue, session, ort, storage = null) {
    this.manifest = manifest;
    this.table = table;
    this.session = session;
    this.ort = ort;
    this.storage = storage;
    this.maxLen = manifest.model.max_len;
    this.nModel = table.n;
    this.ids = catalogue.ids.slice();
    this.titles = catalogue.titles.slice();
    this.popular = catalogue.popular;
    this.lookup = new Map(this.ids.map((id, i) => [id, i + 1]));
    this.restoreAdded();
  }

  get version() { return this.manifest.version; }

  /** Rows scored: padding + model items + added items. */
  get rows() { return this.table.rows; }

  title(itemId) { return this.titles[(this.lookup.get(itemId) || 0) - 1] || ""; }

  /** The user vector of a window of model item indices (1..N, oldest first). */
  async userVector(window) {
    const T = window.length;
    const D = this.table.dim;
    const vecs = new Float32Array(T * D);
    window.forEach((i, t) => this.table.rowInto(i, vecs, t * D));
    const feeds = {
      item_vecs: new this.ort.Tensor("float32", vecs, [1, T, D]),
      seqs: new this.ort.Tensor("int64", BigInt64Array.from(window, (i) => BigInt(i)), [1, T]),
    };
    const out = await this.session.run(feeds);
    return out.user.data; // Float32Array (D,)
  }

  /** Top-k row indices and scores of a history of row indices. */
  async recommendIndices(history, k = 10) {
    const window = windowOf(history, this.nModel, this.maxLen);
    if (!window.length) {
      const seen = new Set(history);
      const indices = this.popular.filter((i) => !seen.has(i)).slice(0, k);
      return { indices, scores: indices.map(() => 0), fallback: "popular" };
    }
    const u = await this.userVector(window);
    return { ...topK(this.table.scores(u), k, history), fallback: null };
  }

  /**
   * Top-k for a history of item ids (oldest first); unknown ids are ignored (and listed).
   * @returns {Promise<{items: {item_id: string, title: string, score: number}[], ms: number,
   *   fallback: string|null, unknown: string[]}>}
   */
  async recommend(historyIds, { k = 10 } = {}) {
    const t0 = now();
    const unknown = [];
    const history = [];
    for (const id of historyIds) {
      const i = this.lookup.get(id);
      if (i === undefined) unknown.push(id);
      else history.push(i);
    }
    const { indices, scores, fallback } = await this.recommendIndices(history, k);
    const items = indices.map((i, r) => ({
      item_id: this.ids[i - 1], title: this.titles[i - 1] || "", score: scores[r] }));
    return { items, ms: now() - t0, fallback, unknown };
  }

  /** Add items (each {item_id, title, vector}); known ids are skipped. Returns how many. */
  addItems(items, persist = true) {
    const fresh = items.filter((it) => !this.lookup.has(it.item_id));
    if (!fresh.length) return 0;
    const first = this.table.addRows(fresh.map((it) => it.vector));
    fresh.forEach((it, j) => {
      this.ids.push(it.item_id);
      this.titles.push(it.title || "");
      this.lookup.set(it.item_id, first + j);
    });
    if (persist) this.saveAdded();
    return fresh.length;
  }

  /**
   * Fetch the items the server added since this copy's last row (only those: the bundle is
   * not downloaded again) and add them. The server must serve the bundle's model version.
   * @param {string} url the server's additions route (e.g. "/v1/edge/items")
   * @returns {Promise<number>} items added
   */
  async update(url = "/v1/edge/items", { fetch: fetchFn = globalThis.fetch.bind(globalThis) } = {}) {
    let added = 0;
    for (;;) {
      const q = new URL(url, globalThis.location ? globalThis.location.href : undefined);
      q.searchParams.set("since", String(this.rows));
      const res = await fetchFn(q);
      if (!res.ok) throw new Error(`catalogue update: ${res.status} ${res.statusText}`);
      const body = await res.json();
      if (body.model_version !== this.manifest.source.model_version) {
        throw new Error(`catalogue update: the server serves ${body.model_version}, this ` +
          `bundle is of ${this.manifest.source.model_version}: reload the bundle`);
      }
      if (body.n_rows < this.rows) { // the server lost additions this copy holds (restart)
        this.resetAdded();
        continue;
      }
      const fresh = body.items.filter((it) => it.index >= this.rows);
      if (fresh.length && fresh[0].index !== this.rows) {
        throw new Error(`catalogue update: expected row ${this.rows}, got ${fresh[0].index}`);
      }
      added += this.addItems(fresh);
      if (!fresh.length || this.rows >= body.n_rows) return added;
    }
  }

  /** Forget the added items (the bundle's own items stay). */
  resetAdded() {
    for (const id of this.ids.slice(this.nModel)) this.lookup.delete(id);
    this.ids.length = this.nModel;
    this.titles.length = this.nModel;
    this.table.added = new Float32Array(0);
    if (this.storage) this.storage.removeItem(this.addedKey());
  }

  addedKey() { return `liverec.edge.added.${this.version}`; }

  saveAdded() {
    if (!this.storage) return;
    const D = this.table.dim;
    const items = this.ids.slice(this.nModel).map((id, j) => ({
      item_id: id, title: this.titles[this.nModel + j],
      vector: Array.from(this.table.added.subarray(j * D, (j + 1) * D)) }));
    this.storage.setItem(this.addedKey(), JSON.stringify(items));
  }

  restoreAdded() {
    if (!this.storage) return;
    const raw = this.storage.getItem(this.addedKey());
    if (raw === null) return;
    try {
      this.addItems(JSON.parse(raw), false);
    } catch (e) {
      this.storage.removeItem(this.addedKey()); // unreadable: fetched again by update()
    }
  }
}
