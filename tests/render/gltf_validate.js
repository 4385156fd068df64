// Validate a glTF/GLB file with the Khronos glTF validator (npm package gltf-validator) and print its report as JSON.
// usage: node gltf_validate.js MODULE_DIR FILE
const fs = require("fs");
const path = require("path");
const validator = require(process.argv[2]);
const file = process.argv[3];
const external = (uri) => new Promise((resolve, reject) => {
  try { resolve(new Uint8Array(fs.readFileSync(path.join(path.dirname(file), decodeURIComponent(uri))))); }
  catch (err) { reject(err.toString()); }
});
validator.validateBytes(new Uint8Array(fs.readFileSync(file)), { uri: path.basename(file), externalResourceFunction: external, maxIssues: 0 })
  .then((report) => { console.log(JSON.stringify(report)); })
  .catch((err) => { console.error(String(err)); process.exit(1); });
