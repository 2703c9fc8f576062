//! Building one sandbox (store + WASI context) and turning its failures into typed errors.
//!
//! Shared by executors and strategies so both enforce limits the same way: memory through
//! the store's limiter, CPU through epoch ticks counted while guest code runs, wall-clock
//! time through a timeout around the call, which also lets the host drop a guest that
//! waits forever.

use wasmtime::{Store, Trap, UpdateDeadline};

use crate::engine::SandboxEngine;
use crate::error::SandboxError;
use crate::policy::Limits;
use crate::state::SandboxState;

/// A store for `state`, with the limiter and the CPU meter installed.
pub(crate) fn new_store(engine: &SandboxEngine, state: SandboxState) -> Store<SandboxState> {
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.memory);
    // One callback per tick of guest execution: count it as CPU time, and yield so that
    // a busy guest shares its thread with other tasks. Time the guest spends waiting in
    // the host (sleeping, I/O) advances the epoch without ticks being counted here, so
    // only execution is charged (plus at most one tick per wait).
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        if let Some(reason) = state.interrupt.reason() {
            return Err(wasmtime::Error::msg(format!("sandbox stopped: {reason:?}")));
        }
        state.cpu_ticks += 1;
        if state.cpu_ticks > state.cpu_budget_ticks {
            state.cpu_exceeded = true;
            return Err(wasmtime::Error::msg("CPU time limit exceeded"));
        }
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

/// Runs `call` under the wall-clock timeout and maps every failure to a `SandboxError`.
pub(crate) async fn run_limited<T>(
    store: &mut Store<SandboxState>,
    limits: &Limits,
    call: impl AsyncFnOnce(&mut Store<SandboxState>) -> wasmtime::Result<T>,
) -> Result<T, SandboxError> {
    let interrupt = store.data().interrupt.clone();
    // A guest waiting in a host call never reaches an epoch check: dropping the call's
    // future is what stops it then.
    let outcome = tokio::select! {
        biased;
        reason = interrupt.raised() => return Err(SandboxError::from_reason(reason)),
        outcome = tokio::time::timeout(limits.timeout, call(store)) => outcome,
    };
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(classify(err, store.data(), limits)),
        Err(_) => Err(SandboxError::Timeout(limits.timeout)),
    }
}

/// What went wrong, from the error and the meters the sandbox left behind.
pub(crate) fn classify(
    err: wasmtime::Error,
    state: &SandboxState,
    limits: &Limits,
) -> SandboxError {
    if let Some(reason) = state.interrupt.reason() {
        return SandboxError::from_reason(reason);
    }
    if is_table_full(&err) {
        return SandboxError::LimitExceeded {
            bound: crate::interrupt::Bound::HostHandles.name(),
            limit: state.limits.host_handles,
        };
    }
    if state.cpu_exceeded {
        return SandboxError::CpuLimit(limits.cpu);
    }
    if state.memory.hit {
        return SandboxError::OutOfMemory {
            limit_bytes: state.memory.limit(),
        };
    }
    let trap = err.downcast_ref::<Trap>().copied();
    let mut message = match trap {
        Some(Trap::StackOverflow) => "stack overflow (call stack exhausted)".to_string(),
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    // A Rust (or other) guest prints its panic message to stderr before trapping: put it
    // into the error so the person reading the task sees why, not just `unreachable`.
    if let Some(panic) = panic_message(&state.log.snapshot().text) {
        message = format!("{message}: {panic}");
    }
    SandboxError::Trap { message }
}

/// Whether the host refused a new handle because the task's table is full.
fn is_table_full(err: &wasmtime::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        ) || cause
            .to_string()
            .contains("resource table has no free keys")
    })
}

fn panic_message(log: &str) -> Option<String> {
    let start = log.rfind("panicked at")?;
    let rest = &log[start..];
    // "panicked at src/lib.rs:10:5:\n<message>" (newer Rust) or "panicked at '<msg>', file" (older).
    let text: String = rest.lines().take(2).collect::<Vec<_>>().join(" ");
    Some(text.chars().take(1024).collect())
}
