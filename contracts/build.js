#!/usr/bin/env node
// Compiles contracts/*.sol with solc-js and writes contracts/artifacts/<Name>.json.
//
//   node contracts/build.js [--out DIR] [--with FILE ...]
//
// --with adds a repo-relative source (a test contract, say) that may import contracts/*.sol by that
// name; its artifact is written beside the others. The committed artifacts are built without it.
//
// The output is committed, so it must be byte-identical on every rebuild: sources are named by
// repo-relative paths (the metadata hash embedded in the bytecode covers them), files are visited in
// sorted order and the JSON keys are written in a fixed order.
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const CONTRACTS_DIR = __dirname;
const REPO_ROOT = path.resolve(CONTRACTS_DIR, "..");
const NODE_MODULES = path.join(REPO_ROOT, "node_modules");

function parseArgs(argv) {
  let out = path.join(CONTRACTS_DIR, "artifacts");
  const extra = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out" && i + 1 < argv.length) {
      out = path.resolve(argv[++i]);
    } else if (argv[i] === "--with" && i + 1 < argv.length) {
      extra.push(path.relative(REPO_ROOT, path.resolve(argv[++i])).split(path.sep).join("/"));
    } else {
      throw new Error(
        `usage: node contracts/build.js [--out DIR] [--with FILE ...] (unexpected argument ${argv[i]})`
      );
    }
  }
  return { out, extra };
}

// solc hands over package imports (and relative imports inside packages, already resolved to
// "@openzeppelin/contracts/...") by source unit name; only the installed packages may satisfy them.
function findImports(importPath) {
  const file = path.join(NODE_MODULES, importPath);
  if (!importPath.startsWith("@") || !fs.existsSync(file)) {
    return { error: `import not found: ${importPath}` };
  }
  return { contents: fs.readFileSync(file, "utf8") };
}

function main() {
  const { out, extra } = parseArgs(process.argv.slice(2));
  const files = fs
    .readdirSync(CONTRACTS_DIR)
    .filter((f) => f.endsWith(".sol"))
    .sort()
    .map((f) => `contracts/${f}`)
    .concat(extra);
  const sources = {};
  for (const file of files) {
    sources[file] = { content: fs.readFileSync(path.join(REPO_ROOT, file), "utf8") };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const diagnostic of output.errors || []) {
    process.stderr.write(diagnostic.formattedMessage + "\n");
  }
  if (errors.length > 0) {
    process.exit(1);
  }

  fs.mkdirSync(out, { recursive: true });
  // One artifact per file, for the contract named like the file; helper interfaces declared next to
  // it have no bytecode and the Python side never needs them.
  for (const file of files) {
    const name = path.basename(file, ".sol");
    const contract = output.contracts[file][name];
    if (!contract) {
      throw new Error(`${file} must define a contract named ${name}`);
    }
    if (!contract.evm.bytecode.object) {
      continue; // an abstract base (PaidMint): nothing to deploy
    }
    const artifact = { contractName: name, abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object };
    fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
    process.stdout.write(`wrote ${path.relative(process.cwd(), path.join(out, name + ".json"))}\n`);
  }
}

main();
