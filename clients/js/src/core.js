// liverec edge client, the parts without ONNX Runtime: compact item tables, scoring, top-k,
// the history kept on the device. Mirrors src/liverec/edge/table.py and reference.py (the
// Python reference path); test/core.test.mjs compares each fast path with its reference.
//
// Legend: N model items (index 1..N; 0 = padding), R rows (N + 1 + items added later),
// D model dimension, M sub-spaces, K centroids per sub-space, S = D / M.
"use strict";

export const FORMAT = "liverec-web/1";

const TYPED = { u8: Uint8Array, i8: Int8Array, f32: Float32Array };

function typed(buffer, file) {
  const ext = file.split(".").pop();
  const Type = TYPED[ext];
  if (!Type) throw new Error(`${file}: unknown array type .${ext}`);
  return new Type(buffer);
}

/** An item table in a bundle's compact form ("pq", "int8" or "fp32") plus added fp32 rows. */
export class ItemTable {
  /**
   * @param {object} spec the manifest's `table` entry (kind, n_items, dim, files, ...)
   * @param {Record<string, ArrayBuffer>} buffers file name -> contents
   */
  constructor(spec, buffers) {
    this.kind = spec.kind;
    this.n = spec.n_items;
    this.dim = spec.dim;
    const a = {};
    for (const [key, file] of Object.entries(spec.files)) {
      if (!buffers[file]) throw new Error(`table file ${file} is missing`);
      a[key] = typed(buffers[file], file);
    }
    const want = this.kind === "pq"
      ? { codes: this.n * spec.subspaces, codebooks: spec.subspaces * spec.centroids * spec.subdim }
      : this.kind === "int8" ? { rows: this.n * this.dim, scales: this.n }
        : this.kind === "fp32" ? { rows: this.n * this.dim } : null;
    if (!want) throw new Error(`unknown table kind ${this.kind}`);
    for (const [key, len] of Object.entries(want)) {
      if (!a[key] || a[key].length !== len) {
        throw new Error(`table ${key}: ${a[key] ? a[key].length : 0} values, expected ${len}`);
      }
    }
    if (this.kind === "pq") {
      this.m = spec.subspaces;
      this.k = spec.centroids;
      this.s = spec.subdim;
    }
    this.a = a;
    this.added = new Float32Array(0); // (A, D) rows of items added after the bundle was built
  }

  /** Rows in all: padding + model items + added items. */
  get rows() { return this.n + 1 + this.added.length / this.dim; }

  /** Write the decoded vector of row `index` (1..R-1) into out[offset .. offset + D). */
  rowInto(index, out, offset = 0) {
    const D = this.dim;
    if (index > this.n) {
      out.set(this.added.subarray((index - this.n - 1) * D, (index - this.n) * D), offset);
      return;
    }
    const i = index - 1;
    if (this.kind === "pq") {
      const { codes, codebooks } = this.a;
      for (let m = 0; m < this.m; m++) {
        const c = (m * this.k + codes[i * this.m + m]) * this.s;
        for (let j = 0; j < this.s; j++) out[offset + m * this.s + j] = codebooks[c + j];
      }
    } else if (this.kind === "int8") {
      const scale = this.a.scales[i];
      for (let d = 0; d < D; d++) out[offset + d] = this.a.rows[i * D + d] * scale;
    } else {
      out.set(this.a.rows.subarray(i * D, (i + 1) * D), offset);
    }
  }

  /** The whole decoded table (R, D), padding row zero: the reference path. */
  decoded() {
    const out = new Float32Array(this.rows * this.dim);
    for (let i = 1; i < this.rows; i++) this.rowInto(i, out, i * this.dim);
    return out;
  }

  /** Scores of every row for user vector u (D,): the fast path. -> Float32Array (R,) */
  scores(u) {
    const D = this.dim;
    const out = new Float32Array(this.rows);
    if (this.kind === "pq") {
      const { codes, codebooks } = this.a;
      const { m: M, k: K, s: S } = this;
      const lut = new Float32Array(M * K); // lut[m, k] = u_m . c_{m,k}
      for (let m = 0; m < M; m++) {
        for (let k = 0; k < K; k++) {
          let dot = 0;
          const c = (m * K + k) * S;
          for (let j = 0; j < S; j++) dot += u[m * S + j] * codebooks[c + j];
          lut[m * K + k] = dot;
        }
      }
      for (let i = 0; i < this.n; i++) {
        let s = 0;
        const base = i * M;
        for (let m = 0; m < M; m++) s += lut[m * K + codes[base + m]];
        out[i + 1] = s;
      }
    } else {
      const rows = this.a.rows;
      const scales = this.kind === "int8" ? this.a.scales : null;
      for (let i = 0; i < this.n; i++) {
        let s = 0;
        const base = i * D;
        for (let d = 0; d < D; d++) s += u[d] * rows[base + d];
        out[i + 1] = scales ? s * scales[i] : s;
      }
    }
    const A = this.added.length / D;
    for (let j = 0; j < A; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += u[d] * this.added[j * D + d];
      out[this.n + 1 + j] = s;
    }
    return out;
  }

  /** Append rows (each a D-long array of finite numbers). Returns the first new index. */
  addRows(vectors) {
    const D = this.dim;
    const first = this.rows;
    const grown = new Float32Array(this.added.length + vectors.length * D);
    grown.set(this.added);
    vectors.forEach((v, j) => {
      if (v.length !== D) throw new Error(`an added row has ${v.length} values, expected ${D}`);
      for (let d = 0; d < D; d++) {
        if (!Number.isFinite(v[d])) throw new Error("an added row is not finite");
        grown[this.added.length + j * D + d] = v[d];
      }
    });
    this.added = grown;
    return first;
  }
}

/** Reference scores: the decoded table times u. -> Float32Array (R,) */
export function referenceScores(table, u) {
  const rows = table.decoded();
  const D = table.dim;
  const out = new Float32Array(table.rows);
  for (let i = 1; i < table.rows; i++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += u[d] * rows[i * D + d];
    out[i] = s;
  }
  return out;
}

/**
 * The k best rows by score (ties: the lower index first), skipping row 0, the `seen` rows and
 * non-finite scores. -> {indices: number[], scores: number[]}, best first.
 */
export function topK(scores, k, seen = []) {
  const masked = new Uint8Array(scores.length);
  masked[0] = 1;
  for (const i of seen) if (i >= 0 && i < scores.length) masked[i] = 1;
  const idx = [];
  const val = [];
  for (let i = 1; i < scores.length; i++) {
    const s = scores[i];
    if (masked[i] || !Number.isFinite(s)) continue;
    if (idx.length === k && s <= val[k - 1]) continue; // not better (equal: lower index kept)
    let j = idx.length < k ? idx.length : k - 1;
    while (j > 0 && val[j - 1] < s) { // shift the worse ones down one place
      val[j] = val[j - 1];
      idx[j] = idx[j - 1];
      j--;
    }
    val[j] = s;
    idx[j] = i;
  }
  return { indices: idx.slice(0, k), scores: val.slice(0, k) };
}

/** The encoder's input: the model's own items of a history (1..N), the last maxLen. */
export function windowOf(indices, nModel, maxLen) {
  return indices.filter((i) => i >= 1 && i <= nModel).slice(-maxLen);
}

/** Mean share of each reference list found in the other (1 = the same items). */
export function overlapAtK(ref, got) {
  const shares = ref.map((a, r) => {
    if (!a.length) return null;
    const b = new Set(got[r]);
    return a.filter((x) => b.has(x)).length / a.length;
  }).filter((x) => x !== null);
  return shares.length ? shares.reduce((x, y) => x + y, 0) / shares.length : 1;
}

/** Lower-case hex sha256 of an ArrayBuffer (WebCrypto: browsers and node >= 20). */
export async function sha256Hex(buffer) {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Throw unless `buffer` has the manifest entry's size and sha256. */
export async function checkFile(name, buffer, entry) {
  if (buffer.byteLength !== entry.bytes) {
    throw new Error(`${name}: ${buffer.byteLength} bytes, the manifest says ${entry.bytes}`);
  }
  const digest = await sha256Hex(buffer);
  if (digest !== entry.sha256) {
    throw new Error(`${name}: sha256 ${digest.slice(0, 12)}... does not match the manifest`);
  }
}

/**
 * The user's history (item ids, oldest first) in the browser's storage (localStorage or any
 * object with getItem/setItem/removeItem); it never leaves the device. A stored value that is
 * not a list of ids is kept aside under `${key}.unreadable` rather than overwritten.
 */
export class HistoryStore {
  constructor(storage = globalThis.localStorage, key = "liverec.edge.history", limit = 500) {
    this.storage = storage;
    this.key = key;
    this.limit = limit;
  }

  list() {
    const raw = this.storage.getItem(this.key);
    if (raw === null) return [];
    try {
      const v = JSON.parse(raw);
      if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v;
    } catch (e) { /* not JSON: set aside below */ }
    this.storage.setItem(`${this.key}.unreadable`, raw);
    this.storage.removeItem(this.key);
    return [];
  }

  add(itemId) {
    if (typeof itemId !== "string" || !itemId) throw new Error("an item id is a non-empty string");
    const items = [...this.list(), itemId].slice(-this.limit);
    this.storage.setItem(this.key, JSON.stringify(items));
    return items;
  }

  clear() { this.storage.removeItem(this.key); }
}
