//! The apalis peer of Sentinel's peer benchmark (bench/peers/run): apalis 1.0 on its
//! PostgreSQL backend (apalis-postgres) with a no-op job.
//!
//! ```text
//! apalis-peer setup                                   # apalis's migrations (schema `apalis`)
//! apalis-peer enqueue N [--batch B]                   # N no-op jobs, B per INSERT; prints {"enqueued":N,"ms":..}
//! apalis-peer work [--name NAME] [--concurrency C] [--batch B] [--lock-tasks true|false]   # runs until killed
//! ```
//!
//! The database is `DATABASE_URL`. The harness detects completion itself by querying
//! `apalis.jobs`, then stops the workers with SIGTERM.

use std::time::Instant;

use apalis::prelude::*;
use apalis_postgres::{Config, PgTask, PostgresStorage};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

/// The queue (apalis's `job_type`) every job goes to.
const QUEUE: &str = "peers-noop";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {
    id: u64,
}

/// The no-op job.
async fn noop(_job: Noop) -> Result<(), BoxDynError> {
    Ok(())
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    rest: Vec<String>,
}

impl Args {
    fn flag(&self, name: &str) -> Option<&str> {
        let pos = self.rest.iter().position(|a| a == name)?;
        self.rest.get(pos + 1).map(String::as_str)
    }

    fn number(&self, name: &str, default: usize) -> AnyResult<usize> {
        match self.flag(name) {
            None => Ok(default),
            Some(v) => Ok(v.parse().map_err(|e| format!("{name} {v}: {e}"))?),
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: apalis-peer setup | enqueue N [--batch B] | work [--name NAME] [--concurrency C] [--batch B] [--lock-tasks true|false]\n\
         (DATABASE_URL names the PostgreSQL database)"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_else(|| usage());
    let args = Args {
        rest: argv.collect(),
    };
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;

    match cmd.as_str() {
        "setup" => {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await?;
            PostgresStorage::setup(&pool).await?;
        }
        "enqueue" => {
            let n: usize = args
                .rest
                .first()
                .unwrap_or_else(|| usage())
                .parse()
                .map_err(|e| format!("N: {e}"))?;
            let batch = args.number("--batch", 1000)?.max(1);
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await?;
            let start = Instant::now();
            let mut lo = 0;
            while lo < n {
                let hi = (lo + batch).min(n);
                let tasks: Vec<PgTask> = (lo..hi)
                    .map(|i| {
                        TaskBuilder::new(serde_json::to_vec(&Noop { id: i as u64 }).unwrap())
                            .build()
                    })
                    .collect();
                let mut tx = pool.begin().await?;
                apalis_postgres::queries::push_tasks(&mut *tx, QUEUE, tasks).await?;
                tx.commit().await?;
                lo = hi;
            }
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            println!("{{\"enqueued\":{n},\"ms\":{ms:.3}}}");
        }
        "work" => {
            let name = args
                .flag("--name")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("apalis-peer-{}", std::process::id()));
            let concurrency = args.number("--concurrency", 64)?.max(1);
            let batch = args.number("--batch", 100)?.max(1);
            // apalis marks a task Running (one more UPDATE, batched) before running it unless
            // told not to; its own example turns that off for throughput.
            let lock_tasks = args.flag("--lock-tasks").unwrap_or("true") != "false";
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .connect(&url)
                .await?;
            let config = Config::default()
                .queue(QUEUE)
                .batch_size(batch)
                .lock_tasks(lock_tasks);
            let backend = PostgresStorage::<Noop>::new(&pool).with_config(config);
            let worker = WorkerBuilder::new(name)
                .backend(backend)
                .concurrency(concurrency)
                .build(noop);
            worker.run().await?;
        }
        _ => usage(),
    }
    Ok(())
}
