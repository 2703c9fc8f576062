//! The execution loop of one host: claim tasks, run each in a fresh sandbox, settle results.
//!
//! Claims are batched: the claimer takes the free slots plus what the host will start in the
//! next 50 ms at its recent rate (the local buffer, at most `prefetch`), so on a busy host one
//! claim feeds many sandboxes and a host of long tasks hoards nothing. A buffered task
//! is claimed in the store like a running one (leased, fenced, its lease extended by the
//! heartbeat, recovered if the host dies); it is given back to the queue at once on shutdown,
//! or when it waited too long for a slot (then the host stops claiming ahead for a while).
//! Results are settled in batches by one settler, and the loop sleeps on the store's task
//! notifications rather than polling. A result is written with the fencing token of the claim,
//! so a host that lost its lease (declared dead, task cancelled) can never record a completion.
//! Shutdown stops claiming first, then waits for running tasks within a grace period.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sentinel_coord::Store;
use sentinel_coord::Topic;
use sentinel_coord::model::{ClaimRequest, Completion, Failure, RetryPolicy, Task, TaskClaim};
use sentinel_runtime::{PluginFolder, ProgressSink, TaskServices};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::cancels::CancelBoard;
use crate::metrics::Metrics;

/// Most results written in one store transaction.
const SETTLE_BATCH: usize = 512;

/// Results waiting to be written are counted in units of this many bytes (at least one a result).
const UNSETTLED_UNIT_BYTES: usize = 64 * 1024;

/// Units of results a host may hold unwritten: 64 MiB, or 1,024 small results, so the settler
/// writes large batches yet a slow store cannot make the host pile results up.
const UNSETTLED_UNITS: u32 = 1024;

/// How much work a host claims ahead: what it starts in this long at its recent rate.
const AHEAD_HORIZON: Duration = Duration::from_millis(50);

/// How often the start rate is measured.
const PACE_WINDOW: Duration = Duration::from_millis(200);

/// The first measurement comes this soon once tasks have started: a host that starts on a full
/// queue otherwise claims only for its free slots during its first [`PACE_WINDOW`] (a 10,000-task
/// drain on SQLite ran ~25% slower than a long one, most of it in that window).
const FIRST_PACE_WINDOW: Duration = Duration::from_millis(20);

/// After a buffered task waited too long, how long the host claims only for free slots.
const NO_PREFETCH_AFTER_WAIT: Duration = Duration::from_secs(30);

/// Progress of tasks running on this host, as last reported by their plugins.
#[derive(Default)]
pub struct ProgressBoard {
    /// (tenant, task id) → last report.
    entries: Mutex<HashMap<(String, String), (u8, String)>>,
}

impl ProgressBoard {
    /// The last report of a task running here.
    pub fn get(&self, tenant: &str, task_id: &str) -> Option<(u8, String)> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(tenant.to_string(), task_id.to_string()))
            .cloned()
    }

    fn remove(&self, tenant: &str, task_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant.to_string(), task_id.to_string()));
    }
}

impl ProgressSink for ProgressBoard {
    fn report(&self, tenant: &str, task_id: &str, percent: u8, message: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (tenant.to_string(), task_id.to_string()),
                (percent, message.to_string()),
            );
    }
}

/// What the loop needs.
pub struct WorkerContext {
    pub worker_id: String,
    pub store: Arc<dyn Store>,
    pub folder: Arc<PluginFolder>,
    pub services: TaskServices,
    pub progress: Arc<ProgressBoard>,
    /// Tasks running here, so a cancellation can stop their sandboxes.
    pub cancels: Arc<CancelBoard>,
    pub metrics: Arc<Metrics>,
    pub max_tasks: u32,
    /// Tasks claimed ahead into the local buffer beyond the running ones.
    pub prefetch: u32,
    /// Longest a buffered task waits for a slot before it is given back.
    pub prefetch_wait: Duration,
    /// `None`: whatever the plugin folder serves at the moment of each claim.
    pub task_types: Option<Vec<String>>,
    pub lease_ms: u64,
    /// This process start; the leases it claims belong to it.
    pub incarnation: u64,
    pub idle_poll: Duration,
    pub retry: RetryPolicy,
    /// Tenant policies: the task types each may run and its sandbox ceiling.
    pub tenancy: Arc<crate::tenancy::Tenancy>,
}

/// Handle on the running loop.
pub struct Worker {
    active: Arc<AtomicU32>,
    /// Claimed and not yet settled or given back: running plus buffered.
    held: Arc<Semaphore>,
    held_max: u32,
    stop_claiming: watch::Sender<bool>,
    settler: tokio::task::JoinHandle<()>,
    claimer: tokio::task::JoinHandle<()>,
}

enum Settle {
    Done(Completion),
    Failed(Failure),
    /// A buffered claim that never started: given back to the queue.
    Release(TaskClaim),
    /// Nothing to write: the task was cancelled while it ran (the store already says so).
    Nothing,
}

/// What the claimer shares with the tasks it spawns.
struct Shared {
    ctx: Arc<WorkerContext>,
    active: Arc<AtomicU32>,
    /// Sandboxes running at once (`max_tasks`).
    slots: Arc<Semaphore>,
    held: Arc<Semaphore>,
    unsettled: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
    settle: mpsc::UnboundedSender<(Settle, OwnedSemaphorePermit)>,
    /// Claimed tasks waiting in the buffer for a slot.
    waiting: AtomicU32,
    /// Signalled when a claimed task leaves the buffer or finishes.
    freed: Notify,
    /// Tasks started here so far (the claim pace follows it).
    started: AtomicU64,
    /// Until when the claimer takes only what can start at once: set when a buffered task
    /// waited too long for a slot (the running tasks are long), so nothing sits claimed while
    /// its deadline runs.
    no_prefetch_until: Mutex<Option<Instant>>,
}

impl Worker {
    /// Starts claiming and running tasks.
    pub fn start(ctx: WorkerContext) -> Worker {
        let ctx = Arc::new(ctx);
        let active = Arc::new(AtomicU32::new(0));
        let held_max = ctx.max_tasks.saturating_add(ctx.prefetch);
        let held = Arc::new(Semaphore::new(held_max as usize));
        // Results waiting to be written hold a permit until they are: the host never holds
        // more than this many, and a claim waits rather than piling results up behind a slow
        // store (which would delay every tenant's completions, and grow without bound).
        let unsettled = Arc::new(Semaphore::new(UNSETTLED_UNITS as usize));
        let (stop_claiming, stopped) = watch::channel(false);
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let settler = tokio::spawn(settle::settle_loop(ctx.clone(), settle_rx));
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(ctx.max_tasks as usize)),
            ctx,
            active: active.clone(),
            held: held.clone(),
            unsettled,
            stopped,
            settle: settle_tx,
            no_prefetch_until: Mutex::new(None),
            waiting: AtomicU32::new(0),
            freed: Notify::new(),
            started: AtomicU64::new(0),
        });
        let claimer = tokio::spawn(claim_loop(shared));
        Worker {
            active,
            held,
            held_max,
            stop_claiming,
            settler,
            claimer,
        }
    }

    /// A counter the heartbeat reads.
    pub fn active_counter(&self) -> Arc<AtomicU32> {
        self.active.clone()
    }

    /// Stops claiming, gives back buffered claims at once, waits up to `grace` for running
    /// tasks, flushes their results. Returns how many tasks were still running when the grace
    /// period ended.
    pub async fn drain(self, grace: Duration) -> u32 {
        let _ = self.stop_claiming.send(true);
        let _ = self.claimer.await;
        let finished = tokio::time::timeout(grace, self.held.acquire_many(self.held_max)).await;
        let left = if finished.is_ok() {
            0
        } else {
            self.active.load(Ordering::Relaxed)
        };
        // The claimer is gone and every finished task has sent its result: once the
        // remaining senders (tasks still running past the grace period) are dropped with
        // the runtime, the settler flushes and ends.
        if left == 0 {
            let _ = tokio::time::timeout(Duration::from_secs(10), self.settler).await;
        }
        left
    }
}

impl Shared {
    fn prefetching(&self) -> bool {
        let mut until = self
            .no_prefetch_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *until {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                *until = None;
                true
            }
            None => self.ctx.prefetch > 0,
        }
    }

    fn stop_prefetching(&self) {
        *self
            .no_prefetch_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + NO_PREFETCH_AFTER_WAIT);
    }
}

async fn claim_loop(sh: Arc<Shared>) {
    let ctx = &sh.ctx;
    let mut stopped = sh.stopped.clone();
    let mut wake = ctx.store.subscribe(Topic::Tasks);
    let mut backoff = Duration::from_millis(50);
    let mut pace = Pace::new();
    'claiming: loop {
        if *stopped.borrow() {
            break;
        }
        // Room for at least one more claim (running + buffered), or shutdown.
        let first = tokio::select! {
            permit = sh.held.clone().acquire_owned() => permit.expect("semaphore never closed"),
            _ = stopped.changed() => break,
        };
        // How far ahead to claim: what this host starts in [`AHEAD_HORIZON`] at its recent
        // rate (at most `prefetch`), so a fast host claims in large batches and a host of long
        // tasks claims only for free slots. While tasks still wait in the buffer, wait until half
        // of that is free again (or the buffer runs dry), so each claim is a big one; an idle
        // slot claims at once.
        let ahead = pace.ahead(&sh);
        let want = ((sh.ctx.max_tasks + ahead) / 2).max(1) as usize;
        while sh.waiting.load(Ordering::Acquire) > 0 && room(&sh, ahead) < want {
            tokio::select! {
                _ = sh.freed.notified() => {}
                _ = stopped.changed() => break 'claiming,
            }
        }
        let mut permits = vec![first];
        while let Ok(p) = sh.held.clone().try_acquire_owned() {
            permits.push(p);
        }
        let room_now = room(&sh, ahead);
        if room_now == 0 {
            // Nothing can start and the buffer holds enough: wait for a task to move on.
            drop(permits);
            tokio::select! {
                _ = sh.freed.notified() => {}
                _ = stopped.changed() => break,
            }
            continue;
        }
        permits.truncate(room_now);
        let task_types = ctx
            .task_types
            .clone()
            .unwrap_or_else(|| ctx.folder.task_types());
        if task_types.is_empty() {
            drop(permits);
            wait_for_work(ctx, &mut wake, &mut stopped).await;
            continue;
        }
        wake.borrow_and_update();
        let req = ClaimRequest {
            worker_id: ctx.worker_id.clone(),
            task_types: Some(task_types),
            tenants: None,
            limit: permits.len() as u32,
            lease_ms: ctx.lease_ms,
            incarnation: ctx.incarnation,
        };
        let claimed = match ctx.store.claim(&req).await {
            Ok(tasks) => {
                backoff = Duration::from_millis(50);
                tasks
            }
            Err(e) => {
                // The store is unreachable or failing: keep running what we have, retry later.
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "claim failed");
                drop(permits);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if claimed.is_empty() {
            drop(permits);
            wait_for_work(ctx, &mut wake, &mut stopped).await;
            continue;
        }
        for (task, held) in claimed.into_iter().zip(permits.drain(..)) {
            sh.waiting.fetch_add(1, Ordering::AcqRel);
            tokio::spawn(start_when_free(sh.clone(), task, held));
        }
        // Unused permits (fewer tasks than asked for) are released here by `permits` dropping.
    }
}

/// The host's recent start rate, for how far ahead it claims.
struct Pace {
    since: Instant,
    started: u64,
    per_second: f64,
}

impl Pace {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            started: 0,
            per_second: 0.0,
        }
    }

    /// Tasks to hold claimed beyond the free slots: the starts of the next [`AHEAD_HORIZON`]
    /// at the rate of the last [`PACE_WINDOW`] or so, at least one per slot, at most
    /// `prefetch`; none while the host has stopped prefetching.
    fn ahead(&mut self, sh: &Shared) -> u32 {
        let now = sh.started.load(Ordering::Relaxed);
        if self.per_second == 0.0 && now == self.started {
            // Idle so far: the window starts with the work, so idle time does not dilute the
            // first measurement.
            self.since = Instant::now();
        }
        let elapsed = self.since.elapsed();
        let first = self.per_second == 0.0 && now > self.started;
        if elapsed >= PACE_WINDOW || (first && elapsed >= FIRST_PACE_WINDOW) {
            self.per_second = (now - self.started) as f64 / elapsed.as_secs_f64();
            (self.since, self.started) = (Instant::now(), now);
        }
        if !sh.prefetching() {
            return 0;
        }
        let ahead = (self.per_second * AHEAD_HORIZON.as_secs_f64()).ceil() as u32;
        ahead.max(sh.ctx.max_tasks).min(sh.ctx.prefetch)
    }
}

/// How many more tasks to claim now: free slots plus `ahead`, less what already waits.
fn room(sh: &Shared, ahead: u32) -> usize {
    let wanted = sh.slots.available_permits() + ahead as usize;
    wanted.saturating_sub(sh.waiting.load(Ordering::Acquire) as usize)
}

/// A claimed task waits in the local buffer for a slot, then runs. It is given back to the
/// queue instead if the host stops first, or if it waited longer than [`max_buffer_wait`]
/// (its deadline runs from the claim).
async fn start_when_free(sh: Arc<Shared>, task: Task, held: OwnedSemaphorePermit) {
    let mut stopped = sh.stopped.clone();
    let slot = tokio::select! {
        biased;
        _ = stopped.wait_for(|s| *s) => None,
        slot = tokio::time::timeout(max_buffer_wait(&sh.ctx, &task), sh.slots.clone().acquire_owned()) => {
            match slot {
                Ok(p) => Some(p.expect("semaphore never closed")),
                Err(_) => {
                    sh.stop_prefetching();
                    None
                }
            }
        }
    };
    sh.waiting.fetch_sub(1, Ordering::AcqRel);
    if slot.is_some() {
        sh.started.fetch_add(1, Ordering::Relaxed);
    }
    let Some(slot) = slot else {
        sh.ctx.metrics.claims_released.inc();
        // The claim stays held until the settler has given it back, so a draining host
        // waits for the write.
        let _ = sh
            .settle
            .send((Settle::Release(TaskClaim::of(&task)), held));
        sh.freed.notify_one();
        return;
    };
    sh.freed.notify_one();
    let ctx = &sh.ctx;
    sh.active.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.tasks_running_here.inc();
    let (task_id, tenant) = (task.id.clone(), task.tenant.clone());
    let interrupt = ctx.cancels.start(&tenant, &task_id);
    let result = run::run_task(ctx, task, &interrupt).await;
    ctx.cancels.finish(&tenant, &task_id);
    // A result waits for room among the unwritten ones, holding its slot: a slow store slows
    // this host's tasks instead of piling results up in it.
    let result_permit = sh
        .unsettled
        .clone()
        .acquire_many_owned(unsettled_units(&result))
        .await
        .expect("semaphore never closed");
    let _ = sh.settle.send((result, result_permit));
    ctx.progress.remove(&tenant, &task_id);
    sh.active.fetch_sub(1, Ordering::Relaxed);
    ctx.metrics.tasks_running_here.dec();
    drop((slot, held));
    sh.freed.notify_one();
}

/// What a result counts against [`UNSETTLED_UNITS`]: its bytes in units, at least one, at most
/// all of them (a result larger than the budget waits until nothing else is unwritten).
fn unsettled_units(result: &Settle) -> u32 {
    let bytes = match result {
        Settle::Done(c) => c.output.len(),
        Settle::Failed(f) => f.error.len(),
        Settle::Release(_) | Settle::Nothing => 0,
    };
    (bytes / UNSETTLED_UNIT_BYTES + 1).min(UNSETTLED_UNITS as usize) as u32
}

/// How long a buffered task may wait for a slot: a tenth of its timeout, at most the host's
/// `prefetch_wait`, so waiting never eats a meaningful part of the time it has to run.
fn max_buffer_wait(ctx: &WorkerContext, task: &Task) -> Duration {
    Duration::from_millis(task.timeout_ms / 10).min(ctx.prefetch_wait)
}

async fn wait_for_work(
    ctx: &WorkerContext,
    wake: &mut watch::Receiver<u64>,
    stopped: &mut watch::Receiver<bool>,
) {
    tokio::select! {
        _ = wake.changed() => {}
        _ = tokio::time::sleep(ctx.idle_poll) => {}
        _ = stopped.changed() => {}
    }
}

mod run;
mod settle;
