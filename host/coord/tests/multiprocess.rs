//! Several OS processes share one SQLite file. The test binary re-executes itself with
//! `SENTINEL_COORD_CHILD` set to play a child role (see `child_entry`).

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rusqlite::{Connection, TransactionBehavior, params};
use sentinel_coord::model::*;
use sentinel_coord::{QueueStore, SqliteStore, Store, clock};

const ROLE: &str = "SENTINEL_COORD_CHILD";

fn spawn_child(role: &str, db: &str, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("COORD_DB", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child process")
}

fn child_output(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A resource protected by fencing: it accepts a write only if its token is at least the
/// highest token it has seen, and logs every accepted write. Shared by all processes.
struct FencedRegister {
    conn: Connection,
}

impl FencedRegister {
    fn open(path: &str) -> Self {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS fence (id INTEGER PRIMARY KEY CHECK (id = 1), max_token INTEGER NOT NULL);
             INSERT OR IGNORE INTO fence VALUES (1, 0);
             CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, token INTEGER NOT NULL, op TEXT NOT NULL, actor TEXT NOT NULL);",
        )
        .unwrap();
        Self { conn }
    }

    fn write(&mut self, token: u64, op: &str, actor: &str) -> bool {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let max: i64 = tx
            .query_row("SELECT max_token FROM fence", [], |r| r.get(0))
            .unwrap();
        if (token as i64) < max {
            return false;
        }
        tx.execute("UPDATE fence SET max_token = ?1", [token as i64])
            .unwrap();
        tx.execute(
            "INSERT INTO log (token, op, actor) VALUES (?1, ?2, ?3)",
            params![token as i64, op, actor],
        )
        .unwrap();
        tx.commit().unwrap();
        true
    }

    fn log(&self) -> Vec<(u64, String, String)> {
        let mut s = self
            .conn
            .prepare("SELECT token, op, actor FROM log ORDER BY seq")
            .unwrap();
        s.query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }
}

const LOCK_TTL_MS: u64 = 60;

/// One contender: acquire, enter, (sometimes pause past the TTL), exit, release. Returns how many
/// critical sections it entered and how many of its writes the register refused.
async fn contend(
    store: Arc<dyn Store>,
    register_path: String,
    actor: String,
    rounds: u32,
) -> (u32, u32, u32) {
    let mut register = FencedRegister::open(&register_path);
    let (mut entered, mut refused_after_pause, mut refused_without_pause) = (0, 0, 0);
    let mut done = 0;
    while done < rounds {
        let req = LockRequest {
            tenant: "t".into(),
            key: "fenced".into(),
            owner: actor.clone(),
            ttl_ms: LOCK_TTL_MS,
            metadata: serde_json::Value::Null,
            holder_secret: None,
        };
        let Some(lock) = store.acquire_lock(&req).await.unwrap() else {
            let nap = rand::rng().random_range(0..3);
            tokio::time::sleep(Duration::from_millis(nap)).await;
            continue;
        };
        done += 1;
        let pause = rand::rng().random_bool(0.15);
        let started = Instant::now();
        if register.write(lock.token, "enter", &actor) {
            entered += 1;
        } else if started.elapsed() > Duration::from_millis(LOCK_TTL_MS / 2) {
            refused_after_pause += 1;
        }
        if pause {
            tokio::time::sleep(Duration::from_millis(LOCK_TTL_MS + 30)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ok = register.write(lock.token, "exit", &actor);
        if !ok {
            if started.elapsed() >= Duration::from_millis(LOCK_TTL_MS) {
                refused_after_pause += 1;
            } else {
                refused_without_pause += 1;
            }
        }
        let _ = store
            .release_lock(&lock.tenant, &lock.key, &lock.owner, lock.token, None)
            .await;
    }
    (entered, refused_after_pause, refused_without_pause)
}

async fn run_contenders(
    db: &str,
    register: &str,
    prefix: &str,
    tasks: usize,
    rounds: u32,
) -> (u32, u32, u32) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db).unwrap());
    let mut handles = Vec::new();
    for i in 0..tasks {
        handles.push(tokio::spawn(contend(
            store.clone(),
            register.to_string(),
            format!("{prefix}-{i}"),
            rounds,
        )));
    }
    let mut total = (0, 0, 0);
    for h in handles {
        let (a, b, c) = h.await.unwrap();
        total = (total.0 + a, total.1 + b, total.2 + c);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_register_shows_no_two_lock_holders_ever_acted_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coord.db").to_string_lossy().into_owned();
    let register = dir
        .path()
        .join("register.db")
        .to_string_lossy()
        .into_owned();
    SqliteStore::open(&db).unwrap();
    FencedRegister::open(&register);
    let children: Vec<Child> = (0..2)
        .map(|i| {
            spawn_child(
                "lock",
                &db,
                &[
                    ("REGISTER_DB", register.clone()),
                    ("ACTOR", format!("proc{i}")),
                ],
            )
        })
        .collect();
    let (entered, fenced_out, refused_here) = run_contenders(&db, &register, "parent", 4, 8).await;
    eprintln!("parent: entered={entered} fenced_out_after_pause={fenced_out}");
    assert_eq!(
        refused_here, 0,
        "a holder that never paused past its TTL was fenced out"
    );
    for c in children {
        let out = child_output(c);
        assert!(
            out.contains("refused_without_pause=0"),
            "child output: {out}"
        );
    }
    let log = FencedRegister::open(&register).log();
    assert!(log.len() > 80, "contenders made progress: {}", log.len());
    let mut seen = HashSet::new();
    let mut actors = HashSet::new();
    let mut prev: Option<(u64, &str)> = None;
    for (token, op, actor) in &log {
        actors.insert(actor.split('-').next().unwrap().to_string());
        if let Some((pt, _)) = prev {
            assert!(*token >= pt, "accepted tokens never go backwards");
            if *token != pt {
                assert!(
                    seen.insert(pt),
                    "token {pt} acted again after another holder: sections interleaved"
                );
            }
        }
        if op == "exit" {
            assert_eq!(
                prev.map(|p| p.0),
                Some(*token),
                "an exit follows its own enter with no one in between"
            );
        }
        prev = Some((*token, actor));
    }
    assert!(
        actors.len() >= 3,
        "the parent and both child processes took part: {actors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_one_file_complete_every_task_exactly_once() {
    const N: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coord.db").to_string_lossy().into_owned();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let tasks: Vec<NewTask> = (0..N)
        .map(|i| NewTask::new("job", format!("{i}")))
        .collect();
    for chunk in tasks.chunks(500) {
        store.enqueue(chunk).await.unwrap();
    }
    // A victim claims a batch and is killed holding it: its leases must run out and the tasks
    // must still complete exactly once elsewhere.
    let mut victim = spawn_child("victim", &db, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.queue_stats(None).await.unwrap().running == 0 {
        assert!(Instant::now() < deadline, "victim never claimed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let workers: Vec<Child> = (0..3)
        .map(|_| spawn_child("worker", &db, &[("TOTAL", N.to_string())]))
        .collect();
    let reaper = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                store.reap_expired(&RetryPolicy::default()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut completed_ids = Vec::new();
    for w in workers {
        let out = child_output(w);
        // libtest prints "test child_entry ... " before the child's own output on the same line.
        let at = out.find("completed=").expect("worker reports") + "completed=".len();
        let line = out[at..].lines().next().unwrap_or("");
        completed_ids.extend(
            line.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    reaper.abort();
    let unique: HashSet<_> = completed_ids.iter().collect();
    assert_eq!(
        completed_ids.len(),
        N,
        "completions accepted across processes"
    );
    assert_eq!(unique.len(), N, "no task was completed twice");
    let stats = store.queue_stats(None).await.unwrap();
    assert_eq!(stats.completed, N as u64);
    let requeued = store
        .list_tasks(&TaskFilter {
            state: Some(TaskState::Completed),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.attempt == 2)
        .count();
    assert!(
        requeued >= 1,
        "the killed victim's tasks ran again as attempt 2"
    );
}

/// Child-process roles; does nothing when run as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let db = std::env::var("COORD_DB").unwrap();
    match role.as_str() {
        "lock" => {
            let register = std::env::var("REGISTER_DB").unwrap();
            let actor = std::env::var("ACTOR").unwrap();
            let (entered, _, refused) = run_contenders(&db, &register, &actor, 3, 8).await;
            println!("entered={entered} refused_without_pause={refused}");
        }
        "victim" => {
            let store = SqliteStore::open_with(&db, clock::system(), Default::default()).unwrap();
            let req = ClaimRequest {
                worker_id: "victim".into(),
                task_types: None,
                tenants: None,
                limit: 25,
                lease_ms: 300,
                incarnation: 0,
            };
            let got = store.claim(&req).await.unwrap();
            assert!(!got.is_empty());
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        "worker" => {
            let total: u64 = std::env::var("TOTAL").unwrap().parse().unwrap();
            let store = SqliteStore::open(&db).unwrap();
            let me = format!("worker-{}", std::process::id());
            let mut done = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let req = ClaimRequest {
                    worker_id: me.clone(),
                    task_types: None,
                    tenants: None,
                    limit: 16,
                    lease_ms: 10_000,
                    incarnation: 0,
                };
                let batch = store.claim(&req).await.unwrap();
                if batch.is_empty() {
                    if store.queue_stats(None).await.unwrap().completed >= total {
                        break;
                    }
                    assert!(Instant::now() < deadline, "queue never drained");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let completions: Vec<Completion> = batch
                    .iter()
                    .map(|t| Completion {
                        tenant: t.tenant.clone(),
                        task_id: t.id.clone(),
                        fence: t.fence,
                        output: t.payload.clone(),
                    })
                    .collect();
                for (t, s) in batch
                    .iter()
                    .zip(store.complete(&completions).await.unwrap())
                {
                    if s == Settlement::Applied(TaskState::Completed) {
                        done.push(t.id.clone());
                    }
                }
            }
            println!("completed={}", done.join(","));
        }
        other => panic!("unknown child role {other}"),
    }
}
