#!/usr/bin/env node
// elihu-guest-build: turns a job module into a component of elihu's job world.
//
//   elihu-guest-build src/index.js -o my-job.wasm
//   elihu-guest-build hello/index.js markdown/index.js --out-dir dist   (dist/hello.wasm, dist/markdown.wasm)
//
// Each entry module (which exports `run = job(...)`) is bundled with its
// imports by esbuild, then componentize-js embeds it in the SpiderMonkey
// engine and snapshots it (nothing is downloaded: no AOT). The WIT world is
// the one this package carries (wit/job.wit). WASI HTTP stays disabled until
// elihu grants outbound HTTP.

import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { componentize } from "@bytecodealliance/componentize-js";
import * as esbuild from "esbuild";

const WIT = join(dirname(fileURLToPath(import.meta.url)), "wit");
const WORLD = "job";
// The features of the JS engine the job world does not offer.
const DISABLED = ["http", "fetch-event"];

const USAGE = `usage: elihu-guest-build ENTRY.js [-o OUT.wasm]
       elihu-guest-build ENTRY.js... --out-dir DIR   (each to DIR/<entry's directory name>.wasm)`;

function parseArgs(argv) {
  const entries = [];
  let out;
  let outDir;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-o" || arg === "--out") out = argv[++i];
    else if (arg === "--out-dir") outDir = argv[++i];
    else if (arg === "-h" || arg === "--help") return { help: true };
    else if (arg.startsWith("-")) throw new Error(`unknown option ${arg}\n${USAGE}`);
    else entries.push(arg);
  }
  if (entries.length === 0) throw new Error(`give the job's entry module\n${USAGE}`);
  if (out !== undefined && outDir !== undefined) throw new Error(`give -o or --out-dir, not both\n${USAGE}`);
  if (out !== undefined && entries.length > 1) throw new Error(`-o takes one entry; use --out-dir for several\n${USAGE}`);
  const targets = entries.map((entry) => {
    const name = basename(dirname(resolve(entry)));
    const wasm = out ?? join(outDir ?? ".", `${outDir ? name : basename(entry).replace(/\.[cm]?[jt]s$/, "")}.wasm`);
    return { entry, wasm };
  });
  return { targets };
}

async function build({ entry, wasm }, work) {
  const started = Date.now();
  const bundle = join(work, `${basename(wasm, ".wasm")}.js`);
  await esbuild.build({
    entryPoints: [entry],
    outfile: bundle,
    bundle: true,
    format: "esm",
    platform: "neutral",
    mainFields: ["module", "main"],
    external: ["elihu:*", "wasi:*"],
    logLevel: "warning",
  });
  const { component } = await componentize({
    sourcePath: bundle,
    witPath: WIT,
    worldName: WORLD,
    disableFeatures: DISABLED,
  });
  await mkdir(dirname(resolve(wasm)), { recursive: true });
  await writeFile(wasm, component);
  const mib = (component.length / (1 << 20)).toFixed(1);
  console.error(`built ${wasm} from ${entry} (${mib} MiB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`error: ${e.message}`);
    process.exit(2);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }
  const work = await mkdtemp(join(tmpdir(), "elihu-guest-build-"));
  try {
    // One at a time: each componentize already keeps a core busy, and
    // running them together makes none finish sooner on a small machine.
    for (const target of args.targets) await build(target, work);
  } catch (e) {
    console.error(`error: ${e.message ?? e}`);
    process.exitCode = 1;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
