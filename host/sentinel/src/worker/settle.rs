//! The settler: writes results (completions, failures) and gives back unstarted claims in
//! batches, retrying while the store is unavailable. It is the only writer of results.

use std::sync::Arc;
use std::time::Duration;

use sentinel_coord::model::Settlement;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::{SETTLE_BATCH, Settle, WorkerContext};

pub(super) async fn settle_loop(
    ctx: Arc<WorkerContext>,
    mut rx: mpsc::UnboundedReceiver<(Settle, OwnedSemaphorePermit)>,
) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut released = Vec::new();
    let mut held = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some((item, permit)) = next {
            held.push(permit);
            match item {
                Settle::Done(c) => done.push(c),
                Settle::Failed(f) => failed.push(f),
                Settle::Release(c) => released.push(c),
                Settle::Nothing => {}
            }
            if done.len() + failed.len() + released.len() >= SETTLE_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !done.is_empty() {
            let batch = std::mem::take(&mut done);
            let applied = write_with_retry("complete", batch.len(), || ctx.store.complete(&batch));
            count(&ctx, applied.await);
        }
        if !failed.is_empty() {
            let batch = std::mem::take(&mut failed);
            let applied =
                write_with_retry("fail", batch.len(), || ctx.store.fail(&batch, &ctx.retry));
            count(&ctx, applied.await);
        }
        if !released.is_empty() {
            // Not given back (refused): their leases run out and the reaper requeues them.
            let batch = std::mem::take(&mut released);
            let n = write_with_retry("release", batch.len(), || ctx.store.release_claims(&batch));
            if let Some(n) = n.await {
                tracing::debug!(
                    released = n,
                    asked = batch.len(),
                    "gave unstarted claims back"
                );
            }
        }
        // Written (or refused for good): room for the next claims.
        held.clear();
    }
}

fn count(ctx: &WorkerContext, settlements: Option<Vec<Settlement>>) {
    for s in settlements.into_iter().flatten() {
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
}

/// Writes a batch, retrying while the store is unavailable: a result is only dropped when the
/// store refuses it (`None`: lost lease, or a process outside the fleet), never because of an
/// outage.
async fn write_with_retry<T, F, Fut>(what: &str, n: usize, write: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = sentinel_coord::StoreResult<T>>,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        match write().await {
            Ok(out) => return Some(out),
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, what, tasks = n, retry_in_ms = backoff.as_millis() as u64, "store unavailable; will retry writing results");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                // Not transient: the leases run out and the tasks run again elsewhere
                // (at-least-once), which is safe; retrying would only block newer results.
                tracing::error!(error = %e, what, tasks = n, "store refused the results; the tasks will be requeued when their leases expire");
                return None;
            }
        }
    }
}
