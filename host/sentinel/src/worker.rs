//! The execution loop of one host: claim tasks, run each in a fresh sandbox, settle results.
//!
//! Claims are batched up to the free slots, results are settled in batches by one settler,
//! and the loop sleeps on the store's task notifications rather than polling. A result is
//! written with the fencing token of the claim, so a host that lost its lease (declared dead,
//! task cancelled) can never record a completion. Shutdown stops claiming first, then waits
//! for running tasks within a grace period.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sentinel_coord::Store;
use sentinel_coord::Topic;
use sentinel_coord::model::{ClaimRequest, Completion, Failure, RetryPolicy, Settlement, Task};
use sentinel_runtime::{PluginFolder, ProgressSink, SandboxError, TaskServices};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::cancels::CancelBoard;
use crate::metrics::Metrics;

/// Most results written in one store transaction.
const SETTLE_BATCH: usize = 512;

/// Results a host may hold unwritten, per task slot.
const UNSETTLED_PER_SLOT: usize = 4;

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
    ctx: Arc<WorkerContext>,
    active: Arc<AtomicU32>,
    slots: Arc<Semaphore>,
    stop_claiming: watch::Sender<bool>,
    settler: tokio::task::JoinHandle<()>,
    claimer: tokio::task::JoinHandle<()>,
}

enum Settle {
    Done(Completion),
    Failed(Failure),
    /// Nothing to write: the task was cancelled while it ran (the store already says so).
    Nothing,
}

impl Worker {
    /// Starts claiming and running tasks.
    pub fn start(ctx: WorkerContext) -> Worker {
        let ctx = Arc::new(ctx);
        let active = Arc::new(AtomicU32::new(0));
        let slots = Arc::new(Semaphore::new(ctx.max_tasks as usize));
        // Results waiting to be written hold a permit until they are: the host never holds
        // more than this many, and a claim waits rather than piling results up behind a slow
        // store (which would delay every tenant's completions, and grow without bound).
        let unsettled = Arc::new(Semaphore::new(UNSETTLED_PER_SLOT * ctx.max_tasks as usize));
        let (stop_claiming, stopped) = watch::channel(false);
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let settler = tokio::spawn(settle_loop(ctx.clone(), settle_rx));
        let claimer = tokio::spawn(claim_loop(
            ctx.clone(),
            active.clone(),
            slots.clone(),
            unsettled,
            stopped,
            settle_tx,
        ));
        Worker {
            ctx,
            active,
            slots,
            stop_claiming,
            settler,
            claimer,
        }
    }

    /// A counter the heartbeat reads.
    pub fn active_counter(&self) -> Arc<AtomicU32> {
        self.active.clone()
    }

    /// Stops claiming, waits up to `grace` for running tasks, flushes their results.
    /// Returns how many tasks were still running when the grace period ended.
    pub async fn drain(self, grace: Duration) -> u32 {
        let _ = self.stop_claiming.send(true);
        let _ = self.claimer.await;
        let all = self.ctx.max_tasks;
        let finished = tokio::time::timeout(grace, self.slots.acquire_many(all)).await;
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

async fn claim_loop(
    ctx: Arc<WorkerContext>,
    active: Arc<AtomicU32>,
    slots: Arc<Semaphore>,
    unsettled: Arc<Semaphore>,
    mut stopped: watch::Receiver<bool>,
    settle: mpsc::UnboundedSender<(Settle, OwnedSemaphorePermit)>,
) {
    let mut wake = ctx.store.subscribe(Topic::Tasks);
    let mut backoff = Duration::from_millis(50);
    loop {
        if *stopped.borrow() {
            break;
        }
        // Wait for at least one free slot (or shutdown).
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
            _ = stopped.changed() => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        // As many results may be pending as there are unsettled permits.
        let first = tokio::select! {
            permit = unsettled.clone().acquire_owned() => permit.expect("semaphore never closed"),
            _ = stopped.changed() => break,
        };
        let mut results = vec![first];
        while results.len() < permits.len() {
            match unsettled.clone().try_acquire_owned() {
                Ok(p) => results.push(p),
                Err(_) => break,
            }
        }
        permits.truncate(results.len());
        let task_types = ctx
            .task_types
            .clone()
            .unwrap_or_else(|| ctx.folder.task_types());
        if task_types.is_empty() {
            drop((permits, results));
            wait_for_work(&ctx, &mut wake, &mut stopped).await;
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
                drop((permits, results));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if claimed.is_empty() {
            drop((permits, results));
            wait_for_work(&ctx, &mut wake, &mut stopped).await;
            continue;
        }
        for ((task, permit), result_permit) in claimed
            .into_iter()
            .zip(permits.drain(..))
            .zip(results.drain(..))
        {
            active.fetch_add(1, Ordering::Relaxed);
            ctx.metrics.tasks_running_here.inc();
            let (ctx, active, settle) = (ctx.clone(), active.clone(), settle.clone());
            tokio::spawn(async move {
                let (task_id, tenant) = (task.id.clone(), task.tenant.clone());
                let interrupt = ctx.cancels.start(&tenant, &task_id);
                let result = run_task(&ctx, task, &interrupt).await;
                ctx.cancels.finish(&tenant, &task_id);
                let _ = settle.send((result, result_permit));
                ctx.progress.remove(&tenant, &task_id);
                active.fetch_sub(1, Ordering::Relaxed);
                ctx.metrics.tasks_running_here.dec();
                drop(permit);
            });
        }
        // Unused permits (fewer tasks than slots) are released here by `permits` dropping.
    }
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

/// Runs one claimed task; takes it by value so its payload moves into the sandbox uncopied.
async fn run_task(
    ctx: &WorkerContext,
    task: Task,
    interrupt: &sentinel_runtime::Interrupt,
) -> Settle {
    let started = Instant::now();
    let (fence, timeout_ms) = (task.fence, task.timeout_ms);
    let tenant = task.tenant.clone();
    let failure = |task_id: &str, error: String, retryable: bool| {
        Settle::Failed(Failure {
            tenant: tenant.clone(),
            task_id: task_id.to_string(),
            fence,
            error,
            retryable,
        })
    };
    if !ctx.tenancy.may_submit(&task.tenant, &task.task_type) {
        // Admitted by a host with another configuration (or before this tenant's policy
        // changed): this host's policy still decides what runs here.
        return failure(
            &task.id,
            format!(
                "task type {:?} is not allowed for tenant {:?} on worker {}",
                task.task_type, task.tenant, ctx.worker_id
            ),
            false,
        );
    }
    if !ctx
        .tenancy
        .trusts(&task.tenant, ctx.folder.signer_of(&task.task_type).as_ref())
    {
        // This host's plugin for the type is not signed by a key the tenant trusts; another
        // host's may be.
        return failure(
            &task.id,
            format!(
                "the plugin serving {:?} on worker {} is not signed by a key tenant {:?} trusts",
                task.task_type, ctx.worker_id, task.tenant
            ),
            true,
        );
    }
    let Some(plugin) = ctx.folder.executor_for(&task.task_type) else {
        // The plugin went away between claim and run: another host may still serve the type.
        return failure(
            &task.id,
            format!(
                "no plugin serves task type {:?} on worker {}",
                task.task_type, ctx.worker_id
            ),
            true,
        );
    };
    let mut metadata: Vec<(String, String)> = task.metadata.into_iter().collect();
    for (dep, output) in &task.dependency_outputs {
        metadata.push((
            format!("dependency:{dep}"),
            String::from_utf8_lossy(output).into_owned(),
        ));
    }
    let ceiling = ctx.tenancy.ceiling(&task.tenant);
    let wit_task = sentinel_runtime::Task {
        id: task.id,
        task_type: task.task_type,
        tenant: task.tenant,
        priority: task.priority,
        attempt: task.attempt,
        payload: task.payload,
        metadata,
    };
    let timeout = Duration::from_millis(timeout_ms.max(1));
    let outcome = tokio::time::timeout(
        timeout,
        plugin.run_under(
            ctx.folder.runtime(),
            &wit_task,
            &ctx.services,
            interrupt,
            ceiling,
        ),
    )
    .await;
    ctx.metrics
        .task_duration
        .observe(started.elapsed().as_secs_f64());
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(_) => {
            ctx.metrics
                .sandbox_errors
                .with_label_values(&["TIMEOUT"])
                .inc();
            return failure(
                &wit_task.id,
                format!("TIMEOUT: task timeout of {timeout_ms} ms exceeded"),
                true,
            );
        }
    };
    tracing::debug!(
        component = "worker",
        worker_id = %ctx.worker_id,
        action = "run_task",
        task_id = %wit_task.id,
        task_type = %wit_task.task_type,
        attempt = wit_task.attempt,
        result = match &outcome.result { Ok(_) => "success", Err(e) => e.code() },
        duration_ms = outcome.duration.as_millis() as u64,
        log = %outcome.log.text,
        log_dropped_bytes = outcome.log.dropped_bytes,
        "task ran"
    );
    match outcome.result {
        Ok(output) => Settle::Done(Completion {
            tenant: tenant.clone(),
            task_id: wit_task.id,
            fence,
            output,
        }),
        Err(SandboxError::Cancelled) => {
            ctx.metrics
                .sandbox_errors
                .with_label_values(&["CANCELLED"])
                .inc();
            Settle::Nothing
        }
        Err(e) => {
            ctx.metrics
                .sandbox_errors
                .with_label_values(&[e.code()])
                .inc();
            let retryable = e.is_retryable();
            let message = match &e {
                SandboxError::TaskFailed { message, .. } => message.clone(),
                other => format!("{}: {other}", other.code()),
            };
            failure(&wit_task.id, message, retryable)
        }
    }
}

async fn settle_loop(
    ctx: Arc<WorkerContext>,
    mut rx: mpsc::UnboundedReceiver<(Settle, OwnedSemaphorePermit)>,
) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut held = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some((item, permit)) = next {
            held.push(permit);
            match item {
                Settle::Done(c) => done.push(c),
                Settle::Failed(f) => failed.push(f),
                Settle::Nothing => {}
            }
            if done.len() + failed.len() >= SETTLE_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !done.is_empty() {
            let batch = std::mem::take(&mut done);
            settle_with_retry(&ctx, "complete", || ctx.store.complete(&batch), batch.len()).await;
        }
        if !failed.is_empty() {
            let batch = std::mem::take(&mut failed);
            settle_with_retry(
                &ctx,
                "fail",
                || ctx.store.fail(&batch, &ctx.retry),
                batch.len(),
            )
            .await;
        }
        // Written (or refused for good): room for the next claims.
        held.clear();
    }
}

/// Writes a batch of results, retrying while the store is unavailable: a result is only
/// dropped when the store refuses it (lost lease), never because of an outage.
async fn settle_with_retry<'a, F, Fut>(ctx: &'a WorkerContext, what: &str, write: F, n: usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = sentinel_coord::StoreResult<Vec<Settlement>>> + 'a,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        match write().await {
            Ok(settlements) => {
                for s in settlements {
                    match s {
                        Settlement::Applied(state) => ctx
                            .metrics
                            .tasks_settled
                            .with_label_values(&[state.as_str()])
                            .inc(),
                        Settlement::Rejected(reason) => {
                            ctx.metrics.completions_rejected.inc();
                            tracing::warn!(%reason, "result refused: this worker no longer holds the task");
                        }
                    }
                }
                return;
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, what, tasks = n, retry_in_ms = backoff.as_millis() as u64, "store unavailable; will retry writing results");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                // Not transient: the leases run out and the tasks run again elsewhere
                // (at-least-once), which is safe; retrying would only block newer results.
                tracing::error!(error = %e, what, tasks = n, "store refused the results; the tasks will be requeued when their leases expire");
                return;
            }
        }
    }
}
