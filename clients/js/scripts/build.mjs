// Build the runtime that `liverec export-web` copies into a bundle's runtime/ folder: the
// client's ES modules and onnxruntime-web's WebAssembly backend (the single-file wasm build,
// run on one thread), all from this package and its locked dependencies; nothing is fetched
// at run time. Writes dist/ (each file and its .gz) and dist/runtime.json (the file list
// export-web reads).
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const ortDist = join(root, "node_modules", "onnxruntime-web", "dist");
const ortVersion = JSON.parse(
  readFileSync(join(root, "node_modules", "onnxruntime-web", "package.json"), "utf8")).version;
const pinned = JSON.parse(readFileSync(join(root, "package.json"), "utf8"))
  .dependencies["onnxruntime-web"];
if (ortVersion !== pinned) {
  throw new Error(`onnxruntime-web ${ortVersion} is installed, package.json pins ${pinned}: npm ci`);
}

const files = [
  ["liverec-edge.js", join(root, "src", "liverec-edge.js")],
  ["core.js", join(root, "src", "core.js")],
  // the ESM entry of the wasm-only build, its loader and the WebAssembly binary (SIMD)
  ["ort.wasm.min.mjs", join(ortDist, "ort.wasm.min.mjs")],
  ["ort-wasm-simd-threaded.mjs", join(ortDist, "ort-wasm-simd-threaded.mjs")],
  ["ort-wasm-simd-threaded.wasm", join(ortDist, "ort-wasm-simd-threaded.wasm")],
];
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
for (const [name, src] of files) {
  copyFileSync(src, join(dist, name));
  // the transfer copy, made once here rather than by every export (the .wasm takes seconds)
  writeFileSync(join(dist, `${name}.gz`), gzipSync(readFileSync(src), { level: 9 }));
}
writeFileSync(join(dist, "runtime.json"), JSON.stringify({
  entry: "liverec-edge.js", onnxruntime_web: ortVersion, files: files.map(([n]) => n),
}, null, 2) + "\n");
console.log(`built ${dist}: ${files.length} files (onnxruntime-web ${ortVersion})`);
