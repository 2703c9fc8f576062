//! The one wasmtime engine of a host: pooling allocator, epoch interruption, the ticker.
//!
//! Every sandbox of the host shares this engine, so pool sizes bound how many tasks can
//! run at once. This module owns engine configuration and the epoch clock; it knows
//! nothing about plugins or tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How the engine is sized.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sandboxes that can exist at once (each task and each strategy call is one).
    pub max_instances: u32,
    /// The largest linear memory any plugin may have, bytes; per-plugin limits are below it.
    pub max_memory_bytes: u64,
    /// Guest stack, bytes: deep recursion traps here instead of taking the host down.
    pub max_wasm_stack: usize,
    /// Epoch tick: the granularity of CPU accounting and of yielding to other tasks.
    pub tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_instances: 1000,
            max_memory_bytes: 512 << 20,
            max_wasm_stack: 1 << 20,
            tick: Duration::from_millis(5),
        }
    }
}

/// A configured engine plus the thread that advances its epoch.
pub struct SandboxEngine {
    engine: Engine,
    tick: Duration,
    stop: Arc<AtomicBool>,
}

impl SandboxEngine {
    /// Builds the engine and starts the epoch ticker.
    pub fn new(cfg: &EngineConfig) -> anyhow::Result<SandboxEngine> {
        let engine = Engine::new(&wasmtime_config(cfg))
            .map_err(anyhow::Error::from)
            .context("configuring wasmtime")?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            let tick = cfg.tick;
            std::thread::Builder::new()
                .name("sentinel-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .context("starting the epoch ticker")?;
        }
        Ok(SandboxEngine {
            engine,
            tick: cfg.tick,
            stop,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The epoch tick.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Number of ticks that make up `d`, at least one.
    pub fn ticks(&self, d: Duration) -> u64 {
        (d.as_nanos() / self.tick.as_nanos().max(1)).max(1) as u64
    }
}

impl Drop for SandboxEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The wasmtime configuration shared by the runtime and the baseline benchmark, so the
/// comparison measures Sentinel's own overhead and nothing else.
pub fn wasmtime_config(cfg: &EngineConfig) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(cfg.max_instances)
        // Python and JavaScript components carry far more than 64 core instances.
        .max_core_instances_per_component(512)
        .total_core_instances(cfg.max_instances.saturating_mul(4).max(1024))
        .max_memories_per_component(16)
        .max_tables_per_component(64)
        .total_memories(cfg.max_instances.saturating_mul(2))
        .total_tables(cfg.max_instances.saturating_mul(4))
        .total_stacks(cfg.max_instances)
        .max_memory_size(cfg.max_memory_bytes as usize)
        .table_elements(100_000)
        // Keep the first pages of each slot resident: re-zeroing them is cheaper than
        // faulting them in again for every task (FACTS: 2x faster per task).
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .max_wasm_stack(cfg.max_wasm_stack)
        .async_stack_size(cfg.max_wasm_stack + (1 << 20))
        .wasm_component_model(true);
    config
}
