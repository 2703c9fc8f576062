//! One claimed task, start to result: the tenant's policy and trust checks, the sandbox run under
//! the task's timeout, and the result as a settlement. It never writes to the store itself.

use std::time::{Duration, Instant};

use sentinel_coord::model::{Completion, Failure, Task};
use sentinel_runtime::SandboxError;

use super::{Settle, WorkerContext};

/// Runs one claimed task; takes it by value so its payload moves into the sandbox uncopied.
pub(super) async fn run_task(
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
