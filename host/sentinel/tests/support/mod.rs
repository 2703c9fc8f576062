//! Drives real `sentinel` processes for the end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sentinel::client::Client;

/// One `sentinel worker` process.
pub struct Host {
    pub id: String,
    pub child: Child,
    pub client: Client,
    pub log: PathBuf,
    /// `host:port` it serves HTTP on.
    pub addr: String,
}

/// Fast heartbeats so failover is quick: stale after 1.5 s, checked every 0.5 s.
pub const HEARTBEAT_MS: u64 = 500;
pub const STALE_MS: u64 = 1500;
pub const CHECK_MS: u64 = 500;

pub fn plugins_dir() -> &'static Path {
    &sentinel_guest_build::build_once().plugins_dir
}

/// A plugin folder in `dir` holding the named test guests (`hostile`, ...) and example plugins.
pub fn plugin_folder(dir: &Path, test_guests: &[&str], examples: &[&str]) -> PathBuf {
    let folder = dir.join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    let guests = sentinel_guest_build::build_once();
    let from_guests = test_guests.iter().map(|n| (&guests.hostile_dir, n));
    let from_examples = examples.iter().map(|n| (&guests.plugins_dir, n));
    for (from, name) in from_guests.chain(from_examples) {
        for ext in ["wasm", "toml"] {
            std::fs::copy(
                from.join(format!("{name}.{ext}")),
                folder.join(format!("{name}.{ext}")),
            )
            .unwrap();
        }
    }
    folder
}

/// What a test adds to a worker's command line and environment.
#[derive(Default)]
pub struct Extra<'a> {
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// The `SENTINEL_LOG` filter (default `info`).
    pub log: Option<&'a str>,
}

/// Starts a worker on `store` and waits until it serves HTTP.
pub fn spawn_worker(id: &str, store: &str, dir: &Path, max_tasks: u32) -> Host {
    spawn_worker_with(id, store, dir, max_tasks, &Extra::default())
}

/// [`spawn_worker`] with extra arguments and environment.
pub fn spawn_worker_with(id: &str, store: &str, dir: &Path, max_tasks: u32, extra: &Extra) -> Host {
    let data = dir.join(id);
    std::fs::create_dir_all(&data).unwrap();
    let log = dir.join(format!("{id}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args([
            "worker",
            "--store",
            store,
            "--listen",
            "127.0.0.1:0",
            "--worker-id",
            id,
            "--log-format",
            "json",
        ])
        .arg("--plugins")
        .arg(plugins_dir())
        .arg("--data-dir")
        .arg(&data)
        .args(["--max-tasks", &max_tasks.to_string()])
        .args(["--heartbeat-interval-ms", &HEARTBEAT_MS.to_string()])
        .args(["--stale-threshold-ms", &STALE_MS.to_string()])
        .args(["--check-interval-ms", &CHECK_MS.to_string()])
        .args(["--shutdown-grace-seconds", "30"])
        .args(extra.args)
        .envs(extra.env.iter().copied())
        .env("SENTINEL_LOG", extra.log.unwrap_or("info"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning sentinel");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log_path = log.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut out = std::fs::File::create(&log_path).unwrap();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(addr) = line.strip_prefix("sentinel listening on ") {
                    let _ = tx.send(
                        addr.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                    sent = true;
                }
            }
            let _ = writeln!(out, "{line}");
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!(
                "worker {id} did not start; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    Host {
        id: id.to_string(),
        child,
        client: Client::new(&addr, None, None).unwrap(),
        log,
        addr,
    }
}

impl Host {
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh schema on the test PostgreSQL server: the store that owns it (dropped, with all the
/// test's data, when it drops) and the store URL workers open it with.
pub fn fresh_postgres_store() -> (sentinel_postgres::PgStore, String) {
    let base = sentinel_postgres::testing::url();
    let schema = sentinel_postgres::testing::fresh_schema();
    let owner = sentinel_postgres::PgStore::open_with(
        &base,
        sentinel_postgres::PgOptions {
            schema: Some(schema.clone()),
            drop_schema_on_drop: true,
            ..Default::default()
        },
    )
    .expect("PostgreSQL reachable");
    let sep = if base.contains('?') { '&' } else { '?' };
    (owner, format!("{base}{sep}schema={schema}"))
}

/// Polls `f` until it returns `Some`, for at most `limit`.
pub async fn until<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every task of the default tenant, following the list's cursors (`query`, e.g.
/// `order=asc&limit=7`, is added to each page's request).
pub async fn all_tasks_with(c: &Client, query: &str) -> Vec<serde_json::Value> {
    let mut tasks = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/tasks?{query}");
        if let Some(cur) = &cursor {
            path.push_str(&format!("&cursor={cur}"));
        }
        let page = c.get(&path).await.unwrap();
        tasks.extend(page["tasks"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return tasks,
        }
    }
}

/// Every task of the default tenant.
pub async fn all_tasks(c: &Client) -> Vec<serde_json::Value> {
    all_tasks_with(c, "limit=1000").await
}

/// Waits until `worker` is running at least one task; returns the ids it runs.
/// Waits up to `limit` for task `id` to settle (completed, dead or cancelled); its view.
pub async fn wait_settled(c: &Client, id: &str, limit: Duration) -> serde_json::Value {
    until(limit, "the task to settle", async || {
        let t = c.get(&format!("/v1/tasks/{id}")).await.ok()?;
        matches!(
            t["status"].as_str(),
            Some("completed" | "dead" | "cancelled")
        )
        .then_some(t)
    })
    .await
}

pub async fn wait_until_running_on(c: &Client, worker: &str) -> Vec<String> {
    until(
        Duration::from_secs(60),
        &format!("{worker} to run tasks"),
        async || {
            let r = c
                .get(&format!(
                    "/v1/tasks?status=running&worker={worker}&limit=100"
                ))
                .await
                .ok()?;
            let ids: Vec<String> = r["tasks"]
                .as_array()?
                .iter()
                .filter_map(|t| t["id"].as_str().map(str::to_string))
                .collect();
            (!ids.is_empty()).then_some(ids)
        },
    )
    .await
}

/// Completions applied by the store, summed over every worker that ever registered and was not
/// deregistered: with the fence check, exactly one per completed task.
pub async fn applied_completions(c: &Client) -> u64 {
    let workers = c.get("/v1/workers").await.unwrap();
    workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["stats"]["completed"].as_u64().unwrap())
        .sum()
}
