// Convert between SPZ and PLY with spz-js (an independent implementation of Niantic's SPZ, version 2).
// usage: node spz_js_convert.mjs MODULE_DIR IN.(spz|ply) OUT.(ply|spz)
import { createReadStream, readFileSync, writeFileSync } from "fs";
import { Readable } from "stream";
import path from "path";
import { pathToFileURL } from "url";

const [moduleDir, input, output] = process.argv.slice(2);
const spz = await import(pathToFileURL(path.join(moduleDir, "dist", "index.js")).href);
const cloud = path.extname(input) === ".spz"
  ? await spz.loadSpz(readFileSync(input))
  : await spz.loadPly(Readable.toWeb(createReadStream(input)));
const data = path.extname(output) === ".ply" ? spz.serializePly(cloud) : await spz.serializeSpz(cloud);
writeFileSync(output, Buffer.from(data));
