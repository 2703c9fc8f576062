// Latency of one task on an idle Sentinel host, as a user sees it (issue #13 target: submit ->
// executor start p50 < 1 ms embedded, < 2 ms PostgreSQL).
//
// For each store, one `sentinel worker` host (the echo plugin only) is started and left idle
// for a second; then, one at a time with a pause between them (the host is idle each time):
// POST /v1/tasks with one task, then GET /v1/tasks/{id} in a loop until it is completed.
// Two figures per sample:
//   - submit -> completed seen: from sending the POST to the GET that sees it completed. An upper
//     bound on submit -> executor start: it adds the run, the settlement and the polling.
//   - created -> started: the task's own `started_at - created_at` (store clock, millisecond
//     resolution, so each sample is within 1 ms of the truth; the median of many is reliable
//     to well under that).
// Prints p50/p90/p99 of each. Usage (bench/peers/run --latency calls this):
//   node latency.mjs --sentinel-bin PATH --plugins DIR [--samples N] [--only sqlite,pg]
//                    [--pg-url URL] [--port PORT] [--work-dir DIR]

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";

function args(argv) {
  const o = {
    sentinelBin: null,
    plugins: null,
    samples: 300,
    only: ["sqlite", "pg"],
    pgUrl: "postgres://postgres@127.0.0.1:5432",
    port: 17650,
    workDir: fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-latency-")),
  };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case "--sentinel-bin": o.sentinelBin = v; i++; break;
      case "--plugins": o.plugins = v; i++; break;
      case "--samples": o.samples = Number(v); i++; break;
      case "--only": o.only = v.split(","); i++; break;
      case "--pg-url": o.pgUrl = v; i++; break;
      case "--port": o.port = Number(v); i++; break;
      case "--work-dir": o.workDir = v; i++; break;
      default: throw new Error(`latency.mjs: unknown option ${argv[i]}`);
    }
  }
  if (!o.sentinelBin || !o.plugins) throw new Error("latency.mjs: --sentinel-bin and --plugins are required");
  if (!(o.samples >= 10 && o.samples <= 100000)) throw new Error("--samples: 10..=100000");
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function waitReady(base, child) {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`sentinel exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${base}/health`);
      if (r.ok) return;
    } catch {}
    await sleep(50);
  }
  throw new Error("sentinel did not become ready in 15 s");
}

async function measure(o, name, store) {
  const dataDir = path.join(o.workDir, `data-${name}`);
  fs.mkdirSync(dataDir, { recursive: true });
  const logFile = fs.openSync(path.join(o.workDir, `${name}.log`), "w");
  const child = spawn(o.sentinelBin, [
    "worker", "--store", store, "--listen", `127.0.0.1:${o.port}`, "--worker-id", `latency-${name}`,
    "--plugins", o.plugins, "--data-dir", dataDir,
  ], { stdio: ["ignore", logFile, logFile] });
  const base = `http://127.0.0.1:${o.port}`;
  try {
    await waitReady(base, child);
    await sleep(1000);
    const e2e = [];
    const startDelay = [];
    for (let i = 0; i < o.samples + 20; i++) {
      const t0 = nowMs();
      const r = await fetch(`${base}/v1/tasks`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ type: "echo", payload: i }),
      });
      if (r.status !== 201) throw new Error(`POST /v1/tasks: ${r.status} ${await r.text()}`);
      const { id } = await r.json();
      let task;
      const deadline = nowMs() + 10_000;
      for (;;) {
        if (nowMs() > deadline) throw new Error(`task ${id} not completed after 10 s`);
        const g = await fetch(`${base}/v1/tasks/${encodeURIComponent(id)}`);
        task = await g.json();
        if (task.status === "completed") break;
        if (task.status === "dead" || task.status === "cancelled") throw new Error(`task ${id} ${task.status}`);
      }
      const t1 = nowMs();
      if (i >= 20) {
        // The first 20 warm the host (compiled plugin cache, connections, statements).
        e2e.push(t1 - t0);
        startDelay.push(Date.parse(task.started_at) - Date.parse(task.created_at));
      }
      await sleep(20);
    }
    return { name, e2e, startDelay };
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
  }
}

async function main() {
  const o = args(process.argv.slice(2));
  const stores = [];
  let admin = null;
  if (o.only.includes("sqlite")) stores.push(["sqlite", `sqlite://${path.join(o.workDir, "latency.db")}`]);
  if (o.only.includes("pg")) {
    admin = new pg.Client({ connectionString: `${o.pgUrl}/postgres` });
    await admin.connect();
    await admin.query("drop database if exists peers_latency with (force)");
    await admin.query("create database peers_latency");
    stores.push(["pg", `${o.pgUrl}/peers_latency?schema=sentinel`]);
  }
  try {
    console.log(`latency on an idle host, ${o.samples} samples each, one task at a time`);
    console.log("| store | submit -> completed seen p50 / p90 / p99 (ms) | created -> started p50 / p90 / p99 (ms, store clock) |");
    console.log("|---|---:|---:|");
    for (const [name, store] of stores) {
      const r = await measure(o, name, store);
      const f = (xs) => [50, 90, 99].map((p) => pct(xs, p).toFixed(2)).join(" / ");
      const g = (xs) => [50, 90, 99].map((p) => pct(xs, p).toFixed(0)).join(" / ");
      console.log(`| ${name === "pg" ? "PostgreSQL" : "embedded SQLite"} | ${f(r.e2e)} | ${g(r.startDelay)} |`);
    }
  } finally {
    if (admin) {
      await admin.query("drop database if exists peers_latency with (force)");
      await admin.end();
    }
  }
}

main().catch((e) => {
  console.error(`latency: FAILED: ${e.stack || e}`);
  process.exit(1);
});
