//! Strategy plugins: load balancing decided by a WASM component.
//!
//! Strategies are pure and called often, so each call gets a fresh, capability-less
//! sandbox with small fixed limits. An answer outside the list it was given is an
//! `InvalidOutput` error; the caller falls back to a built-in strategy.

use std::sync::Arc;
use std::time::Duration;

use wasmtime_wasi::WasiCtxBuilder;

use crate::bindings::strategy::StrategyPre;
use crate::bindings::{Task, WorkerView};
use crate::error::SandboxError;
use crate::host::http::OutboundPolicy;
use crate::interrupt::Interrupt;
use crate::log::TaskLog;
use crate::manifest::Manifest;
use crate::policy::Limits;
use crate::runtime::Runtime;
use crate::sandbox::{new_store, run_limited};
use crate::state::SandboxState;

/// A loaded strategy, ready to instantiate.
pub struct StrategyPlugin {
    manifest: Manifest,
    sha256: String,
    pre: StrategyPre<SandboxState>,
}

impl StrategyPlugin {
    pub(crate) fn new(
        manifest: Manifest,
        sha256: String,
        pre: StrategyPre<SandboxState>,
    ) -> StrategyPlugin {
        StrategyPlugin {
            manifest,
            sha256,
            pre,
        }
    }

    /// The manifest it was loaded with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of its `.wasm`.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Push: the index in `workers` that should run `task`, if any.
    pub async fn select_worker(
        &self,
        runtime: &Arc<Runtime>,
        task: &Task,
        workers: &[WorkerView],
    ) -> Result<Option<usize>, SandboxError> {
        let answer = self
            .call(runtime, async |store, pre| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .call_select_worker(&mut *store, task, workers)
                    .await
            })
            .await?;
        check_index(answer, workers.len())
    }

    /// Pull: the index in `tasks` that `worker` should take next, if any.
    pub async fn next_task(
        &self,
        runtime: &Arc<Runtime>,
        worker: &WorkerView,
        tasks: &[Task],
    ) -> Result<Option<usize>, SandboxError> {
        let answer = self
            .call(runtime, async |store, pre| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance.call_next_task(&mut *store, worker, tasks).await
            })
            .await?;
        check_index(answer, tasks.len())
    }

    async fn call<T>(
        &self,
        runtime: &Arc<Runtime>,
        f: impl AsyncFnOnce(
            &mut wasmtime::Store<SandboxState>,
            &StrategyPre<SandboxState>,
        ) -> wasmtime::Result<T>,
    ) -> Result<T, SandboxError> {
        let limits = Limits::STRATEGY;
        let log = TaskLog::new(limits.log_bytes as usize);
        let wasi = deterministic_wasi(&log);
        let state = SandboxState::new(
            &self.manifest.name,
            wasi,
            log.clone(),
            limits,
            runtime.engine.ticks(limits.cpu),
            OutboundPolicy::default(),
            Interrupt::new(),
        );
        let mut store = new_store(&runtime.engine, state);
        let pre = &self.pre;
        let result = run_limited(&mut store, &limits, async |store| f(store, pre).await).await;
        let captured = log.snapshot();
        if !captured.text.is_empty() {
            tracing::debug!(strategy = %self.manifest.name, log = %captured.text, "strategy log");
        }
        result
    }
}

/// A WASI context whose clocks stand still and whose randomness is a fixed seeded stream:
/// a strategy's answer depends only on the snapshot it is given, so the same snapshot always
/// gives the same answer (and a strategy cannot time or fingerprint the host).
fn deterministic_wasi(log: &TaskLog) -> wasmtime_wasi::WasiCtx {
    use rand_wasi::SeedableRng;
    WasiCtxBuilder::new()
        .stdout(log.clone())
        .stderr(log.clone())
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .secure_random(rand_wasi::rngs::StdRng::seed_from_u64(STRATEGY_SEED))
        .insecure_random(rand_wasi::rngs::StdRng::seed_from_u64(STRATEGY_SEED))
        .insecure_random_seed(u128::from(STRATEGY_SEED))
        .max_random_size(crate::policy::RANDOM_BYTES)
        .build()
}

/// The seed of every strategy call's randomness.
const STRATEGY_SEED: u64 = 0x5e47_1e1_5eed;

/// A clock fixed at the Unix epoch (wall) and zero (monotonic).
struct FixedClock;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

fn check_index(answer: Option<u32>, len: usize) -> Result<Option<usize>, SandboxError> {
    match answer {
        None => Ok(None),
        Some(i) if (i as usize) < len => Ok(Some(i as usize)),
        Some(i) => Err(SandboxError::InvalidOutput(format!(
            "index {i} is out of range for {len} candidates"
        ))),
    }
}
