// graphile-worker 0.17.3 in its best configuration: the settings of its own perfTest
// (perfTest/graphile.config.js and website/docs/performance.md, "With batching"):
// 24 concurrent jobs per process, a pool of 25 connections, a local queue of 500 jobs
// fetched in one query (refetch after 10 ms when it runs dry), and completions/failures
// released in batches on the next tick (delay 0).
// The harness sets the connection string (PEERS_GRAPHILE_URL) and the concurrency
// (PEERS_GRAPHILE_CONCURRENCY, default 24).
const path = require("path");

const CONCURRENT_JOBS = parseInt(process.env.PEERS_GRAPHILE_CONCURRENCY || "24", 10);

/** @type {GraphileConfig.Preset} */
const preset = {
  worker: {
    connectionString: process.env.PEERS_GRAPHILE_URL,
    taskDirectory: path.join(__dirname, "tasks"),
    fileExtensions: [".js"],
    gracefulShutdownAbortTimeout: 2500,

    concurrentJobs: CONCURRENT_JOBS,
    maxPoolSize: CONCURRENT_JOBS + 1,

    localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};

module.exports = preset;
