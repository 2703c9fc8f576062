#!/usr/bin/env node
// The peer benchmark's orchestrator: runs graphile-worker, BullMQ, apalis and Sentinel (on
// PostgreSQL and on its embedded SQLite store) with the same N, process count and no-op job,
// interleaved, and prints medians, ratios and CPU per 1000 tasks. Started by bench/peers/run,
// which installs and builds everything first; see bench/peers/README.md.
//
// One measurement ("run") of one system:
//   1. fresh state (a new database, an obliterated queue, a new SQLite file), then enqueue N
//      no-op jobs in batches: timed on its own (enqueue/s), not part of the drain;
//   2. snapshot the database server's CPU, start the P worker processes, and poll the store
//      with a cheap query until no job is left: the drain time runs from the first spawn to
//      the poll that saw nothing left (completed/s = N / drain time);
//   3. at that moment read the CPU (utime+stime from /proc/<pid>/stat) of every worker process
//      and of the database server's processes, then check that all N jobs completed, and stop
//      the workers.

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

import pg from "pg";
import { Queue } from "bullmq";
import IORedis from "ioredis";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PEERS = path.resolve(HERE, "..");
const ROOT = path.resolve(PEERS, "../..");

const SYSTEMS = ["graphile", "bullmq", "apalis", "sentinel-pg", "sentinel-sqlite"];

// ---------------------------------------------------------------------------------------------
// Options

const USAGE = `usage: bench/peers/run [options]
  --tasks N                 jobs per run (default 10000; --smoke: 300)
  --runs R                  interleaved rounds (default 3; --smoke: 1)
  --workers P               worker processes per peer and for sentinel-pg (default 2)
  --only LIST               comma-separated subset of: ${SYSTEMS.join(",")}
  --sentinel-bin PATH       sentinel binary (default target/release/sentinel)
  --apalis-bin PATH         apalis peer binary (default target/peers/release/apalis-peer)
  --plugins DIR             folder holding echo.wasm/echo.toml (default target/guests/plugins)
  --max-tasks M             --max-tasks of each sentinel-pg worker (default 64)
  --prefetch P              --prefetch of each sentinel-pg worker (default: Sentinel's, 256)
  --sqlite-max-tasks M      --max-tasks of the sentinel-sqlite host (default: Sentinel's default)
  --graphile-concurrency C  concurrentJobs per graphile-worker process (default 24)
  --bullmq-concurrency C    concurrency per BullMQ worker process (default 50)
  --apalis-concurrency C    in-flight jobs per apalis worker process (default 64)
  --apalis-batch B          apalis fetch/ack batch size (default 100)
  --apalis-lock-tasks BOOL  apalis marks each job Running before it runs (default true)
  --batch B                 jobs per enqueue call for every system (default 1000)
  --poll-ms MS              completion poll interval (default 20)
  --timeout-s S             give up on one drain after S seconds (default 600)
  --pg-url URL              PostgreSQL server, no database (default postgres://postgres@127.0.0.1:5432)
  --redis-url URL           Redis server (default redis://127.0.0.1:6379)
  --port-base PORT          first HTTP port for sentinel hosts (default 17600)
  --results-dir DIR         where results-<timestamp>.jsonl goes (default target/peers)
  --keep                    keep the benchmark databases, SQLite files and logs
  --smoke                   tiny run for CI: N=300, R=1 unless given
  -h, --help`;

function parseArgs(argv) {
  const o = {
    tasks: null,
    runs: null,
    workers: 2,
    only: SYSTEMS.slice(),
    sentinelBin: path.join(ROOT, "target/release/sentinel"),
    apalisBin: path.join(ROOT, "target/peers/release/apalis-peer"),
    plugins: path.join(ROOT, "target/guests/plugins"),
    maxTasks: 64,
    sqliteMaxTasks: null,
    graphileConcurrency: 24,
    bullmqConcurrency: 50,
    apalisConcurrency: 64,
    apalisBatch: 100,
    apalisLockTasks: "true",
    batch: 1000,
    pollMs: 20,
    timeoutS: 600,
    pgUrl: "postgres://postgres@127.0.0.1:5432",
    redisUrl: "redis://127.0.0.1:6379",
    portBase: 17600,
    resultsDir: path.join(ROOT, "target/peers"),
    keep: false,
    smoke: false,
  };
  const ints = {
    "--tasks": "tasks",
    "--runs": "runs",
    "--workers": "workers",
    "--max-tasks": "maxTasks",
    "--prefetch": "prefetch",
    "--sqlite-max-tasks": "sqliteMaxTasks",
    "--graphile-concurrency": "graphileConcurrency",
    "--bullmq-concurrency": "bullmqConcurrency",
    "--apalis-concurrency": "apalisConcurrency",
    "--apalis-batch": "apalisBatch",
    "--batch": "batch",
    "--poll-ms": "pollMs",
    "--timeout-s": "timeoutS",
    "--port-base": "portBase",
  };
  const strs = {
    "--sentinel-bin": "sentinelBin",
    "--apalis-bin": "apalisBin",
    "--plugins": "plugins",
    "--pg-url": "pgUrl",
    "--redis-url": "redisUrl",
    "--results-dir": "resultsDir",
    "--apalis-lock-tasks": "apalisLockTasks",
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v = null;
    const eq = a.indexOf("=");
    if (a.startsWith("--") && eq > 0) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const value = () => {
      if (v !== null) return v;
      if (i + 1 >= argv.length) die(`${a} needs a value\n${USAGE}`);
      return argv[++i];
    };
    if (a === "-h" || a === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else if (a === "--smoke") o.smoke = true;
    else if (a === "--keep") o.keep = true;
    else if (a in ints) {
      const s = value();
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1) die(`${a}: expected a positive integer, got ${s}`);
      o[ints[a]] = n;
    } else if (a in strs) o[strs[a]] = value();
    else if (a === "--only") {
      o.only = value()
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      for (const s of o.only) if (!SYSTEMS.includes(s)) die(`--only: unknown system ${s} (known: ${SYSTEMS.join(", ")})`);
      if (o.only.length === 0) die("--only: no system given");
    } else die(`unknown option ${a}\n${USAGE}`);
  }
  if (!["true", "false"].includes(o.apalisLockTasks)) die(`--apalis-lock-tasks: expected true or false`);
  o.tasks ??= o.smoke ? 300 : 10000;
  o.runs ??= o.smoke ? 1 : 3;
  // Keep the fixed order whatever order --only lists them in.
  o.only = SYSTEMS.filter((s) => o.only.includes(s));
  for (const k of ["sentinelBin", "apalisBin", "plugins", "resultsDir"]) o[k] = path.resolve(o[k]);
  o.pgUrl = o.pgUrl.replace(/\/+$/, "");
  return o;
}

function die(msg) {
  console.error(`bench/peers: ${msg}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function log(msg) {
  console.log(`[${new Date().toISOString().slice(11, 23)}] ${msg}`);
}

/** utime+stime (and the same of waited-for children) of one process, in ms; null if gone. */
function procStat(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const close = text.lastIndexOf(")");
  const comm = text.slice(text.indexOf("(") + 1, close);
  const f = text.slice(close + 2).split(" "); // f[0] is field 3 (state)
  const tick = (i) => (Number(f[i]) * 1000) / CLK_TCK;
  return { comm, ppid: Number(f[1]), self: tick(11) + tick(12), children: tick(13) + tick(14) };
}

/** All processes whose command name is `comm`: pid -> procStat. */
function procsNamed(comm) {
  const out = new Map();
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const s = procStat(Number(d));
    if (s && s.comm === comm) out.set(Number(d), s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Child processes

const children = new Set();

class Child {
  constructor(name, cmd, args, { env = {}, cwd = ROOT, logFile }) {
    this.name = name;
    this.logFile = logFile;
    const fd = fs.openSync(logFile, "a");
    this.proc = spawn(cmd, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ["ignore", fd, fd],
    });
    fs.closeSync(fd);
    this.pid = this.proc.pid;
    this.exited = null;
    this.exitPromise = new Promise((resolve) => {
      this.proc.on("exit", (code, signal) => {
        this.exited = { code, signal };
        children.delete(this);
        resolve(this.exited);
      });
      this.proc.on("error", (e) => {
        this.exited = { code: -1, signal: null, error: e.message };
        children.delete(this);
        resolve(this.exited);
      });
    });
    children.add(this);
  }

  tail(lines = 15) {
    try {
      const t = fs.readFileSync(this.logFile, "utf8").trimEnd().split("\n");
      return t.slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10000) {
    if (this.exited) return this.exited;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.exited || this.proc.kill("SIGKILL"), graceMs);
    const r = await this.exitPromise;
    clearTimeout(timer);
    return r;
  }

  async waitSuccess(what) {
    const r = await this.exitPromise;
    if (r.code !== 0) throw new Error(`${what} failed (${JSON.stringify(r)}); log ${this.logFile}:\n${this.tail()}`);
  }
}

function killAllChildren() {
  for (const c of children) {
    try {
      c.proc.kill("SIGKILL");
    } catch {}
  }
}
process.on("exit", killAllChildren);
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    console.error(`\nbench/peers: ${sig}, stopping`);
    killAllChildren();
    process.exit(130);
  });
}

/** A persistent `python3 sqlite_poll.py FILE` answering one line per request. */
class SqliteProbe {
  constructor(file) {
    this.proc = spawn("python3", [path.join(PEERS, "sqlite_poll.py"), file], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    this.waiters = [];
    readline.createInterface({ input: this.proc.stdout }).on("line", (l) => this.waiters.shift()?.(l));
  }
  ask(q) {
    return new Promise((resolve, reject) => {
      this.waiters.push((line) => (line.startsWith("error") ? reject(new Error(`sqlite probe: ${line}`)) : resolve(Number(line))));
      this.proc.stdin.write(q + "\n");
    });
  }
  close() {
    this.proc.stdin.end();
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL / Redis plumbing

async function pgClient(url) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  c.on("error", (e) => console.error("bench/peers: PostgreSQL client error:", e.message));
  const pid = (await c.query("select pg_backend_pid() as pid")).rows[0].pid;
  c.backendPid = pid;
  return c;
}

async function recreateDatabase(admin, db) {
  await admin.query(`drop database if exists ${db} with (force)`);
  await admin.query(`create database ${db}`);
}

/** CPU of the PostgreSQL server, as a snapshot to diff. */
function pgSnapshot() {
  return procsNamed("postgres");
}

/**
 * PostgreSQL CPU between two snapshots, in ms.
 * `bench`: the postmaster, the server's background processes (checkpointer, background and
 * WAL writers, autovacuum launcher) and every backend serving the benchmark's database (the
 * harness's own probe connection excepted): other databases' load (another user of the same
 * server) is left out. `all`: every postgres process, exited ones included (through the
 * postmaster's reaped-children time), the harness's probe excepted.
 */
async function pgCpu(s0, s1, admin, db, excludePids) {
  const act = (await admin.query("select pid, datname, backend_type from pg_stat_activity")).rows;
  const info = new Map(act.map((r) => [Number(r.pid), r]));
  const pids = [...s1.keys()];
  const postmaster = pids.find((p) => !s1.has(s1.get(p).ppid));
  const delta = (p) => s1.get(p).self - (s0.get(p)?.self ?? 0);
  let bench = 0;
  for (const p of pids) {
    if (excludePids.includes(p)) continue;
    const r = info.get(p);
    let include;
    if (p === postmaster) include = true;
    else if (!r) include = false; // gone from the view by now, or not a backend
    else if (r.backend_type === "client backend" || r.backend_type === "autovacuum worker" || r.backend_type === "parallel worker")
      include = r.datname === db;
    else include = true;
    if (include) bench += delta(p);
  }
  let all = 0;
  for (const p of pids) if (!excludePids.includes(p)) all += delta(p);
  if (postmaster !== undefined) all += s1.get(postmaster).children - (s0.get(postmaster)?.children ?? 0);
  return { bench, all };
}

function redisOptions(url) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: null };
}

// ---------------------------------------------------------------------------------------------
// The systems

const nodeBin = process.execPath;

function jobsJson(lo, hi) {
  const jobs = [];
  for (let i = lo; i < hi; i++) jobs.push({ identifier: "noop", payload: { id: i } });
  return JSON.stringify(jobs);
}

async function waitHttpReady(url, child, timeoutMs = 120000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exited) throw new Error(`${child.name} exited (${JSON.stringify(child.exited)}) before serving; log ${child.logFile}:\n${child.tail()}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {}
    await sleep(50);
  }
  throw new Error(`${child.name} did not answer ${url} within ${timeoutMs} ms; log ${child.logFile}:\n${child.tail()}`);
}

async function getJson(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status} ${await r.text()}`);
  return r.json();
}

function makeSystems(o, ctx) {
  const P = o.workers;
  const N = o.tasks;
  const B = o.batch;
  const pgDbUrl = (db) => `${o.pgUrl}/${db}`;

  // Sentinel, shared by its two stores: a submit-only host (its --task-types match no task)
  // takes the tasks over HTTP, is stopped, then the measured hosts start on the same store.
  const sentinelCommon = ["--plugins", ctx.echoPlugins, "--data-dir", ctx.sentinelData];
  async function sentinelSubmit(store, logTag) {
    const port = o.portBase;
    const host = new Child(`sentinel submit host (${logTag})`, o.sentinelBin, [
      "worker", "--store", store, "--listen", `127.0.0.1:${port}`, "--worker-id", "submit",
      "--task-types", "peers-bench-none", ...sentinelCommon,
    ], { logFile: ctx.logPath(`${logTag}-submit`) });
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitHttpReady(`${base}/health`, host);
      const t0 = nowMs();
      for (let lo = 0; lo < N; lo += B) {
        const hi = Math.min(N, lo + B);
        const tasks = [];
        for (let i = lo; i < hi; i++) tasks.push({ type: "echo", payload: i });
        const r = await fetch(`${base}/v1/tasks`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ tasks }),
        });
        if (r.status !== 201) throw new Error(`POST /v1/tasks: ${r.status} ${await r.text()}`);
        await r.arrayBuffer();
      }
      return nowMs() - t0;
    } finally {
      await host.stop();
    }
  }
  function sentinelWorkers(store, logTag, count, extra) {
    const ws = [];
    for (let i = 1; i <= count; i++) {
      const id = `${logTag === "sentinel-pg" ? "pg" : "sq"}${i}`;
      ws.push(new Child(`sentinel worker ${id}`, o.sentinelBin, [
        "worker", "--store", store, "--listen", `127.0.0.1:${o.portBase + i}`, "--worker-id", id,
        ...sentinelCommon, ...extra,
      ], { logFile: ctx.logPath(`${logTag}-${id}`) }));
    }
    return ws;
  }

  return {
    graphile: {
      config: `graphile-worker 0.17.3, ${P} proc x concurrency ${o.graphileConcurrency}, localQueue 500, batched complete/fail (delay 0), analyzed`,
      db: "peers_graphile",
      server: "postgres",
      async prepare() {
        await recreateDatabase(ctx.admin, this.db);
        const env = { PEERS_GRAPHILE_URL: pgDbUrl(this.db) };
        await new Child("graphile-worker --schema-only", nodeBin, [ctx.graphileCli, "-C", ctx.graphileConfig, "--schema-only"], {
          env, cwd: path.join(HERE, "graphile"), logFile: ctx.logPath("graphile-schema"),
        }).waitSuccess("graphile-worker --schema-only");
        const c = await pgClient(pgDbUrl(this.db));
        try {
          const t0 = nowMs();
          for (let lo = 0; lo < N; lo += B) {
            await c.query(
              "select 1 from graphile_worker.add_jobs(array(select json_populate_recordset(null::graphile_worker.job_spec, $1::json)))",
              [jobsJson(lo, Math.min(N, lo + B))],
            );
          }
          const enqueueMs = nowMs() - t0;
          await c.query("analyze graphile_worker._private_jobs");
          return enqueueMs;
        } finally {
          await c.end();
        }
      },
      async startProbe() {
        this.probe = await pgClient(pgDbUrl(this.db));
        return [this.probe.backendPid];
      },
      startWorkers() {
        const ws = [];
        for (let i = 1; i <= P; i++)
          ws.push(new Child(`graphile-worker ${i}`, nodeBin, [ctx.graphileCli, "-C", ctx.graphileConfig], {
            env: { PEERS_GRAPHILE_URL: pgDbUrl(this.db), PEERS_GRAPHILE_CONCURRENCY: String(o.graphileConcurrency), NO_LOG_SUCCESS: "1" },
            cwd: path.join(HERE, "graphile"),
            logFile: ctx.logPath(`graphile-w${i}`),
          }));
        return ws;
      },
      async firstDone() {
        return (await this.probe.query("select count(*) < $1 as b from graphile_worker._private_jobs", [N])).rows[0].b;
      },
      async busy() {
        return (await this.probe.query("select exists(select 1 from graphile_worker._private_jobs) as b")).rows[0].b;
      },
      async completed() {
        // Completed jobs are deleted; a job that failed for good would stay.
        const left = Number((await this.probe.query("select count(*) as n from graphile_worker._private_jobs")).rows[0].n);
        return N - left;
      },
      async finish() {
        await this.probe?.end();
        this.probe = null;
      },
    },

    bullmq: {
      config: `BullMQ 5.81.5, ${P} proc x concurrency ${o.bullmqConcurrency}, addBulk, removeOnComplete`,
      server: "redis",
      queueName: "peers-bench",
      async prepare() {
        this.queue ??= new Queue(this.queueName, { connection: redisOptions(o.redisUrl) });
        await this.queue.obliterate({ force: true });
        const t0 = nowMs();
        for (let lo = 0; lo < N; lo += B) {
          const jobs = [];
          for (let i = lo; i < Math.min(N, lo + B); i++)
            jobs.push({ name: "noop", data: { id: i }, opts: { removeOnComplete: true } });
          await this.queue.addBulk(jobs);
        }
        return nowMs() - t0;
      },
      async startProbe() {
        return [];
      },
      startWorkers() {
        const ws = [];
        for (let i = 1; i <= P; i++)
          ws.push(new Child(`bullmq worker ${i}`, nodeBin, [path.join(HERE, "bullmq-worker.mjs")], {
            env: { PEERS_REDIS_URL: o.redisUrl, PEERS_BULLMQ_QUEUE: this.queueName, PEERS_BULLMQ_CONCURRENCY: String(o.bullmqConcurrency) },
            cwd: HERE,
            logFile: ctx.logPath(`bullmq-w${i}`),
          }));
        return ws;
      },
      async left() {
        const c = await this.queue.getJobCounts("waiting", "active", "delayed", "prioritized", "paused", "waiting-children");
        return Object.values(c).reduce((a, b) => a + b, 0);
      },
      async firstDone() {
        return (await this.left()) < N;
      },
      async busy() {
        return (await this.left()) > 0;
      },
      async completed() {
        const c = await this.queue.getJobCounts("waiting", "active", "delayed", "prioritized", "paused", "waiting-children", "failed");
        return N - Object.values(c).reduce((a, b) => a + b, 0);
      },
      async finish() {},
      async close() {
        if (this.queue) {
          await this.queue.obliterate({ force: true }).catch(() => {});
          await this.queue.close();
        }
      },
    },

    apalis: {
      config: `apalis 1.0.0 + apalis-postgres 1.0.0, ${P} proc x concurrency ${o.apalisConcurrency}, batch ${o.apalisBatch}${o.apalisLockTasks === "false" ? ", lock_tasks off" : ""}`,
      db: "peers_apalis",
      server: "postgres",
      async prepare() {
        await recreateDatabase(ctx.admin, this.db);
        const env = { DATABASE_URL: pgDbUrl(this.db) };
        await new Child("apalis-peer setup", o.apalisBin, ["setup"], { env, logFile: ctx.logPath("apalis-setup") })
          .waitSuccess("apalis-peer setup");
        const out = ctx.logPath("apalis-enqueue");
        await new Child("apalis-peer enqueue", o.apalisBin, ["enqueue", String(N), "--batch", String(B)], { env, logFile: out })
          .waitSuccess("apalis-peer enqueue");
        const line = fs.readFileSync(out, "utf8").trim().split("\n").filter((l) => l.startsWith("{")).pop();
        const r = JSON.parse(line);
        if (r.enqueued !== N) throw new Error(`apalis-peer enqueued ${r.enqueued}, not ${N}`);
        return r.ms;
      },
      async startProbe() {
        this.probe = await pgClient(pgDbUrl(this.db));
        return [this.probe.backendPid];
      },
      startWorkers() {
        const ws = [];
        for (let i = 1; i <= P; i++)
          ws.push(new Child(`apalis worker ${i}`, o.apalisBin, [
            "work", "--name", `apalis-peer-${i}`, "--concurrency", String(o.apalisConcurrency), "--batch", String(o.apalisBatch),
            "--lock-tasks", o.apalisLockTasks,
          ], { env: { DATABASE_URL: pgDbUrl(this.db) }, logFile: ctx.logPath(`apalis-w${i}`) }));
        return ws;
      },
      async firstDone() {
        return (await this.probe.query("select exists(select 1 from apalis.jobs where status = 'Done') as b")).rows[0].b;
      },
      async busy() {
        return (await this.probe.query(
          `select exists(select 1 from apalis.jobs where status in ('Pending', 'Queued', 'Running')
                                                     or (status = 'Failed' and attempts < max_attempts)) as b`,
        )).rows[0].b;
      },
      async completed() {
        return Number((await this.probe.query("select count(*) as n from apalis.jobs where status = 'Done'")).rows[0].n);
      },
      async finish() {
        await this.probe?.end();
        this.probe = null;
      },
    },

    "sentinel-pg": {
      config: `sentinel worker x ${P} on PostgreSQL, --max-tasks ${o.maxTasks}${o.prefetch ? ` --prefetch ${o.prefetch}` : ""}, echo in a WASM sandbox`,
      db: "peers_sentinel",
      server: "postgres",
      store() {
        return `${pgDbUrl(this.db)}?schema=sentinel`;
      },
      async prepare() {
        await recreateDatabase(ctx.admin, this.db);
        return sentinelSubmit(this.store(), "sentinel-pg");
      },
      async startProbe() {
        this.probe = await pgClient(pgDbUrl(this.db));
        return [this.probe.backendPid];
      },
      startWorkers() {
        const extra = ["--max-tasks", String(o.maxTasks)];
        if (o.prefetch) extra.push("--prefetch", String(o.prefetch));
        return sentinelWorkers(this.store(), "sentinel-pg", P, extra);
      },
      async firstDone() {
        return (await this.probe.query("select exists(select 1 from sentinel.tasks where state = 'completed') as b")).rows[0].b;
      },
      async busy() {
        return (await this.probe.query(
          `select exists(select 1 from sentinel.tasks where state in ('pending', 'failed'))
               or exists(select 1 from sentinel.tasks where state = 'running') as b`,
        )).rows[0].b;
      },
      async completed() {
        // As a user sees it: the fleet's health document, from one of the measured hosts.
        return (await getJson(`http://127.0.0.1:${o.portBase + 1}/cluster/health`)).tasks_completed;
      },
      async finish() {
        await this.probe?.end();
        this.probe = null;
      },
    },

    "sentinel-sqlite": {
      config: `sentinel worker x 1 on embedded SQLite, default settings${o.sqliteMaxTasks ? ` but --max-tasks ${o.sqliteMaxTasks}` : ""}, echo in a WASM sandbox`,
      server: null,
      async prepare(run) {
        const dir = path.join(ctx.workDir, `sqlite-run${run}`);
        fs.rmSync(dir, { recursive: true, force: true });
        fs.mkdirSync(dir, { recursive: true });
        this.file = path.join(dir, "sentinel.db");
        return sentinelSubmit(`sqlite://${this.file}`, "sentinel-sqlite");
      },
      async startProbe() {
        this.probe = new SqliteProbe(this.file);
        await this.probe.ask("busy"); // Python up and the file open before the clock starts
        return [];
      },
      startWorkers() {
        const extra = o.sqliteMaxTasks ? ["--max-tasks", String(o.sqliteMaxTasks)] : [];
        return sentinelWorkers(`sqlite://${this.file}`, "sentinel-sqlite", 1, extra);
      },
      async firstDone() {
        return (await this.probe.ask("first")) !== 0;
      },
      async busy() {
        return (await this.probe.ask("busy")) !== 0;
      },
      async completed() {
        return (await getJson(`http://127.0.0.1:${o.portBase + 1}/cluster/health`)).tasks_completed;
      },
      async finish() {
        this.probe?.close();
        this.probe = null;
        if (!o.keep && this.file) fs.rmSync(path.dirname(this.file), { recursive: true, force: true });
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// One measurement

async function measure(o, ctx, name, sys, run) {
  const enqueueMs = await sys.prepare(run);
  if (sys.server === "postgres") await ctx.admin.query("checkpoint");
  const exclude = await sys.startProbe();
  const dbSnap0 = sys.server === "postgres" ? pgSnapshot() : sys.server === "redis" ? procStat(ctx.redisPid) : null;

  const t0 = nowMs();
  const workers = sys.startWorkers();
  const deadline = t0 + o.timeoutS * 1000;
  let tEnd;
  let tFirst = null;
  let polls = 0;
  try {
    for (;;) {
      // Until the first job is seen completed, watch for that (start-up time); then for the end.
      const tq = nowMs();
      if (tFirst === null && (await sys.firstDone())) tFirst = tq;
      const busy = tFirst === null || (await sys.busy());
      polls++;
      if (!busy) {
        tEnd = tq;
        break;
      }
      const dead = workers.find((w) => w.exited);
      if (dead) throw new Error(`${dead.name} exited during the drain (${JSON.stringify(dead.exited)}); log ${dead.logFile}:\n${dead.tail()}`);
      if (nowMs() > deadline) throw new Error(`${name}: not drained after ${o.timeoutS} s`);
      // Never let the probe itself take more than a third of the time.
      await sleep(Math.max(o.pollMs, 2 * (nowMs() - tq)));
    }

    // CPU at the moment the drain was seen complete.
    const workerCpu = workers.map((w) => {
      const s = procStat(w.pid);
      return s ? s.self + s.children : NaN;
    });
    let dbCpu = null;
    let dbCpuAll = null;
    if (sys.server === "postgres") {
      const c = await pgCpu(dbSnap0, pgSnapshot(), ctx.admin, sys.db, exclude);
      dbCpu = c.bench;
      dbCpuAll = c.all;
    } else if (sys.server === "redis") {
      const s1 = procStat(ctx.redisPid);
      dbCpu = dbCpuAll = s1.self - dbSnap0.self;
    }

    const drainMs = tEnd - t0;
    const completed = await sys.completed();
    if (completed !== o.tasks) throw new Error(`${name}: ${completed} of ${o.tasks} jobs completed`);
    const per1k = (ms) => (ms === null ? null : (ms * 1000) / o.tasks);
    return {
      type: "run",
      system: name,
      run,
      config: sys.config,
      tasks: o.tasks,
      processes: workers.length,
      enqueue_ms: round(enqueueMs, 1),
      enqueue_per_s: round((o.tasks * 1000) / enqueueMs, 0),
      drain_ms: round(drainMs, 1),
      completed_per_s: round((o.tasks * 1000) / drainMs, 0),
      first_done_ms: round(tFirst - t0, 1),
      polls,
      worker_cpu_ms: workerCpu.map((x) => round(x, 0)),
      worker_cpu_ms_per_1k: round(per1k(workerCpu.reduce((a, b) => a + b, 0)), 1),
      db_server: sys.server ?? "embedded",
      db_cpu_ms: dbCpu === null ? null : round(dbCpu, 0),
      db_cpu_ms_per_1k: dbCpu === null ? null : round(per1k(dbCpu), 1),
      db_cpu_all_ms: dbCpuAll === null ? null : round(dbCpuAll, 0),
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await sys.finish();
  }
}

function round(x, d) {
  if (x === null || !Number.isFinite(x)) return x;
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

// ---------------------------------------------------------------------------------------------
// Report

function fmt(x, d = 0) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "-";
  return x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

function table(rows, header) {
  const all = [header, ...rows];
  const w = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) => "| " + r.map((c, i) => (i === 0 || i === 1 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join(" | ") + " |";
  return [line(header), "|" + w.map((x, i) => (i < 2 ? "-".repeat(x + 2) : "-".repeat(x + 1) + ":")).join("|") + "|", ...rows.map(line)].join("\n");
}

function summarize(o, systems, results) {
  const summary = {};
  for (const name of o.only) {
    const rs = results.filter((r) => r.system === name);
    summary[name] = {
      type: "summary",
      system: name,
      config: systems[name].config,
      runs: rs.length,
      completed_per_s: rs.map((r) => r.completed_per_s),
      completed_per_s_median: median(rs.map((r) => r.completed_per_s)),
      enqueue_per_s_median: median(rs.map((r) => r.enqueue_per_s)),
      first_done_ms_median: median(rs.map((r) => r.first_done_ms)),
      worker_cpu_ms_per_1k_median: median(rs.map((r) => r.worker_cpu_ms_per_1k)),
      db_cpu_ms_per_1k_median: rs.some((r) => r.db_cpu_ms_per_1k !== null) ? median(rs.map((r) => r.db_cpu_ms_per_1k)) : null,
      db_server: rs[0]?.db_server,
    };
  }
  const base = summary.graphile?.completed_per_s_median;
  for (const s of Object.values(summary)) s.ratio_vs_graphile = base ? round(s.completed_per_s_median / base, 2) : null;
  return summary;
}

function printReport(o, summary) {
  const rows = Object.values(summary).map((s) => [
    s.system,
    s.config,
    fmt(s.completed_per_s_median),
    s.completed_per_s.map((x) => fmt(x)).join(" / "),
    s.ratio_vs_graphile === null ? "-" : `${s.ratio_vs_graphile.toFixed(2)}x`,
    fmt(s.worker_cpu_ms_per_1k_median, 1),
    s.db_cpu_ms_per_1k_median === null ? `- (${s.db_server})` : `${fmt(s.db_cpu_ms_per_1k_median, 1)} (${s.db_server})`,
    fmt(s.first_done_ms_median),
    fmt(s.enqueue_per_s_median),
  ]);
  console.log();
  console.log(`N = ${o.tasks} no-op jobs, ${o.runs} interleaved run(s), ${o.workers} worker processes (sentinel-sqlite: 1), ${os.cpus().length} cores`);
  console.log(table(rows, [
    "system", "configuration", "completed/s (median)", "each run", "vs graphile",
    "worker CPU ms/1k tasks", "DB CPU ms/1k tasks", "first done (ms)", "enqueue/s",
  ]));
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").replace(/Z$/, "");
  fs.mkdirSync(o.resultsDir, { recursive: true });
  const workDir = path.join(o.resultsDir, `work-${stamp}`);
  const logDir = path.join(workDir, "logs");
  fs.mkdirSync(logDir, { recursive: true });
  const resultsFile = path.join(o.resultsDir, `results-${stamp}.jsonl`);

  const needsPg = o.only.some((s) => ["graphile", "apalis", "sentinel-pg"].includes(s));
  const needsSentinel = o.only.some((s) => s.startsWith("sentinel"));
  const ctx = {
    workDir,
    logPath: (tag) => path.join(logDir, `${tag}.log`),
    graphileCli: path.join(HERE, "node_modules/graphile-worker/dist/cli.js"),
    graphileConfig: path.join(HERE, "graphile/graphile.config.js"),
    sentinelData: path.join(workDir, "sentinel-data"),
    echoPlugins: path.join(workDir, "plugins"),
  };

  if (needsSentinel) {
    if (!fs.existsSync(o.sentinelBin)) die(`no sentinel binary at ${o.sentinelBin}`);
    // Only the no-op executor: the hosts load (and compile) nothing else.
    fs.mkdirSync(ctx.echoPlugins, { recursive: true });
    for (const f of ["echo.wasm", "echo.toml"]) {
      const src = path.join(o.plugins, f);
      if (!fs.existsSync(src)) die(`${src} is missing (cargo run -p sentinel-guest-build builds it)`);
      fs.copyFileSync(src, path.join(ctx.echoPlugins, f));
    }
  }
  if (o.only.includes("apalis") && !fs.existsSync(o.apalisBin)) die(`no apalis peer binary at ${o.apalisBin}`);

  const env = {
    type: "env",
    started: new Date().toISOString(),
    host: os.hostname(),
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    node: process.version,
    options: { ...o },
  };
  try {
    env.git = execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"]).toString().trim();
  } catch {}
  if (needsSentinel) env.sentinel_bin = { path: o.sentinelBin, mtime: fs.statSync(o.sentinelBin).mtime.toISOString() };

  if (needsPg) {
    ctx.admin = await pgClient(`${o.pgUrl}/postgres`);
    env.postgres = (await ctx.admin.query("show server_version")).rows[0].server_version;
  }
  if (o.only.includes("bullmq")) {
    const r = new IORedis(redisOptions(o.redisUrl));
    const info = await r.info("server");
    await r.quit();
    ctx.redisPid = Number(/process_id:(\d+)/.exec(info)[1]);
    env.redis = /redis_version:([^\r\n]+)/.exec(info)[1];
    if (!procStat(ctx.redisPid)) die(`redis-server (pid ${ctx.redisPid}) is not visible in /proc: run it on this machine`);
  }
  fs.writeFileSync(resultsFile, JSON.stringify(env) + "\n");

  const systems = makeSystems(o, ctx);
  log(`${o.only.join(", ")}: N=${o.tasks}, ${o.runs} run(s), P=${o.workers}; results -> ${path.relative(process.cwd(), resultsFile)}`);
  const results = [];
  let failed = false;
  const t0 = nowMs();
  try {
    for (let run = 1; run <= o.runs; run++) {
      for (const name of o.only) {
        const r = await measure(o, ctx, name, systems[name], run);
        results.push(r);
        fs.appendFileSync(resultsFile, JSON.stringify(r) + "\n");
        log(
          `run ${run}/${o.runs} ${name.padEnd(15)} ${fmt(r.completed_per_s).padStart(7)} completed/s ` +
            `(drain ${fmt(r.drain_ms)} ms, first done at ${fmt(r.first_done_ms)} ms), enqueue ${fmt(r.enqueue_per_s)}/s, ` +
            `CPU ms/1k: workers ${fmt(r.worker_cpu_ms_per_1k, 1)} (each process: ${r.worker_cpu_ms.map((x) => fmt(x)).join(" + ")} ms), ` +
            `db ${r.db_cpu_ms_per_1k === null ? "-" : fmt(r.db_cpu_ms_per_1k, 1)}`,
        );
      }
    }
  } catch (e) {
    failed = true;
    console.error(`\nbench/peers: FAILED: ${e.stack || e}`);
    console.error(`logs: ${logDir}`);
  } finally {
    if (systems.bullmq.queue) await systems.bullmq.close();
    if (ctx.admin) {
      if (!o.keep)
        for (const n of o.only) if (systems[n].db) await ctx.admin.query(`drop database if exists ${systems[n].db} with (force)`).catch(() => {});
      await ctx.admin.end();
    }
  }
  if (results.length) {
    const summary = summarize(o, systems, results);
    for (const s of Object.values(summary)) fs.appendFileSync(resultsFile, JSON.stringify(s) + "\n");
    printReport(o, summary);
  }
  console.log(`\nraw results: ${resultsFile} (${fmt((nowMs() - t0) / 1000, 1)} s)`);
  if (!o.keep && !failed) fs.rmSync(workDir, { recursive: true, force: true });
  else console.log(`work dir kept: ${workDir}`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(`bench/peers: ${e.stack || e}`);
  process.exit(1);
});
