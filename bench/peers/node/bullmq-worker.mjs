// One BullMQ worker process of the peer benchmark: a no-op processor on the harness's queue.
// Usage: node bullmq-worker.mjs   (PEERS_REDIS_URL, PEERS_BULLMQ_QUEUE, PEERS_BULLMQ_CONCURRENCY)
import { Worker } from "bullmq";

const url = new URL(process.env.PEERS_REDIS_URL || "redis://127.0.0.1:6379");
const queue = process.env.PEERS_BULLMQ_QUEUE || "peers-bench";
const concurrency = parseInt(process.env.PEERS_BULLMQ_CONCURRENCY || "50", 10);

const worker = new Worker(queue, async () => {}, {
  connection: {
    host: url.hostname,
    port: Number(url.port || 6379),
    maxRetriesPerRequest: null,
  },
  concurrency,
  // Completed jobs are deleted at once (the jobs were added with removeOnComplete too):
  // the production setting BullMQ's documentation recommends, and what graphile-worker does.
  removeOnComplete: { count: 0 },
});
worker.on("error", (e) => console.error("bullmq worker error:", e));

const stop = async () => {
  await worker.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
