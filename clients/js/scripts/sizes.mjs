// Transfer sizes of files: raw, gzip (level 9) and brotli (quality 11), as a static server
// would send them compressed. `node scripts/sizes.mjs FILE...` prints one JSON object.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const out = {};
for (const file of process.argv.slice(2)) {
  const data = readFileSync(file);
  out[file] = {
    name: basename(file),
    bytes: data.length,
    gzip_bytes: gzipSync(data, { level: 9 }).length,
    brotli_bytes: brotliCompressSync(data, {
      params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length },
    }).length,
  };
}
console.log(JSON.stringify(out));
