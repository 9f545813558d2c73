// The client's parts without ONNX Runtime: each fast path against its reference, top-k order
// and masking, the history store, the manifest checks. `npm test` (node --test), a second.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import {
  HistoryStore, ItemTable, checkFile, overlapAtK, referenceScores, topK, windowOf,
} from "../src/core.js";

function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function tables(n = 37, D = 8, M = 4, K = 16) {
  const r = rng(7);
  const S = D / M;
  const codes = Uint8Array.from({ length: n * M }, () => Math.floor(r() * K));
  const books = Float32Array.from({ length: M * K * S }, () => r() * 2 - 1);
  const rows = Float32Array.from({ length: n * D }, () => r() * 2 - 1);
  const q = Int8Array.from({ length: n * D }, () => Math.round(r() * 254 - 127));
  const scales = Float32Array.from({ length: n }, () => r() / 100);
  return {
    pq: new ItemTable({ kind: "pq", n_items: n, dim: D, subspaces: M, centroids: K, subdim: S,
      files: { codes: "items.codes.u8", codebooks: "items.codebooks.f32" } },
    { "items.codes.u8": codes.buffer, "items.codebooks.f32": books.buffer }),
    int8: new ItemTable({ kind: "int8", n_items: n, dim: D,
      files: { rows: "items.rows.i8", scales: "items.scales.f32" } },
    { "items.rows.i8": q.buffer, "items.scales.f32": scales.buffer }),
    fp32: new ItemTable({ kind: "fp32", n_items: n, dim: D, files: { rows: "items.rows.f32" } },
      { "items.rows.f32": rows.buffer }),
    u: Float32Array.from({ length: D }, () => r() * 2 - 1),
  };
}

for (const kind of ["pq", "int8", "fp32"]) {
  test(`${kind} table: fast scores equal the decoded table's (reference), added rows too`, () => {
    const t = tables();
    const table = t[kind];
    table.addRows([Array.from({ length: 8 }, (_, d) => d / 10), new Array(8).fill(-0.5)]);
    const fast = table.scores(t.u);
    const ref = referenceScores(table, t.u);
    assert.equal(fast.length, 37 + 1 + 2);
    assert.equal(fast[0], 0);
    for (let i = 0; i < fast.length; i++) assert.ok(Math.abs(fast[i] - ref[i]) < 1e-5, `row ${i}`);
  });
}

test("pq rows decode to their centroids", () => {
  const { pq } = tables();
  const out = new Float32Array(8);
  pq.rowInto(5, out);
  for (let m = 0; m < 4; m++) {
    const c = (m * 16 + pq.a.codes[4 * 4 + m]) * 2;
    assert.deepEqual(Array.from(out.subarray(2 * m, 2 * m + 2)),
      Array.from(pq.a.codebooks.subarray(c, c + 2)));
  }
});

test("a table whose files have the wrong length is refused with the file named", () => {
  assert.throws(() => new ItemTable({ kind: "fp32", n_items: 3, dim: 4,
    files: { rows: "items.rows.f32" } }, { "items.rows.f32": new Float32Array(11).buffer }),
  /rows: 11 values, expected 12/);
  assert.throws(() => new ItemTable({ kind: "fp32", n_items: 3, dim: 4,
    files: { rows: "items.rows.f32" } }, {}), /items.rows.f32 is missing/);
});

test("added rows must be finite and D long; a refused batch changes nothing", () => {
  const { fp32 } = tables();
  assert.throws(() => fp32.addRows([new Array(8).fill(0), [1, 2]]), /8/);
  assert.throws(() => fp32.addRows([new Array(8).fill(NaN)]), /not finite/);
  assert.equal(fp32.rows, 38);
});

test("topK: best first, ties to the lower index, padding/seen/non-finite skipped", () => {
  const s = Float32Array.from([9, 1, 5, 5, NaN, 7, 5, Infinity, -Infinity, 2]);
  assert.deepEqual(topK(s, 3).indices, [5, 2, 3]);
  assert.deepEqual(topK(s, 3, [5]).indices, [2, 3, 6]);
  assert.deepEqual(topK(s, 20, [2, 3, 6]).indices, [5, 9, 1]);
  assert.deepEqual(topK(s, 0).indices, []);
});

test("topK equals a full sort on random scores with many ties", () => {
  const r = rng(3);
  for (let trial = 0; trial < 50; trial++) {
    const s = Float32Array.from({ length: 200 }, () => Math.floor(r() * 20));
    const seen = [1, 17, 44];
    const ref = Array.from(s.keys()).filter((i) => i > 0 && !seen.includes(i))
      .sort((a, b) => s[b] - s[a] || a - b).slice(0, 10);
    assert.deepEqual(topK(s, 10, seen).indices, ref);
  }
});

test("windowOf keeps the model's items, the last maxLen", () => {
  assert.deepEqual(windowOf([3, 0, 51, 4, 5, 6], 50, 3), [4, 5, 6]);
  assert.deepEqual(windowOf([60, 61], 50, 3), []);
});

test("overlapAtK", () => {
  assert.equal(overlapAtK([[1, 2], [3, 4]], [[2, 1], [3, 5]]), 0.75);
  assert.equal(overlapAtK([[]], [[1]]), 1);
});

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k), map: m };
}

test("history store: order kept, limit, unreadable values set aside, not lost", () => {
  const st = memoryStorage();
  const h = new HistoryStore(st, "h", 3);
  assert.deepEqual(h.list(), []);
  ["a", "b", "c", "d"].forEach((x) => h.add(x));
  assert.deepEqual(h.list(), ["b", "c", "d"]);
  assert.throws(() => h.add(""), /non-empty string/);
  st.setItem("h", "{not json");
  assert.deepEqual(h.list(), []);
  assert.equal(st.getItem("h.unreadable"), "{not json");
  h.add("e");
  assert.deepEqual(h.list(), ["e"]);
  h.clear();
  assert.deepEqual(h.list(), []);
});

test("checkFile: size and sha256 against the manifest", async () => {
  const buf = new TextEncoder().encode("liverec").buffer;
  const sha256 = createHash("sha256").update(Buffer.from(buf)).digest("hex");
  await checkFile("x", buf, { bytes: 7, sha256 });
  await assert.rejects(checkFile("x", buf, { bytes: 8, sha256 }), /7 bytes, the manifest says 8/);
  await assert.rejects(checkFile("x", buf, { bytes: 7, sha256: "0".repeat(64) }),
    /does not match/);
});
