//! The per-sandbox store data: WASI context, resource table, limits, meters and services.
//!
//! One `SandboxState` lives exactly as long as one task (or one strategy call) and is
//! never reused, so nothing a guest does can leak into the next task. The fields that
//! classify failures (`cpu_exceeded`, `memory.hit`) are written by the limiter and the
//! epoch callback and read once the call returns.

use std::collections::BTreeMap;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::host::http::OutboundPolicy;
use crate::log::TaskLog;
use crate::services::{KvBackend, ProgressSink};
use std::sync::Arc;

/// Linear memory accounting for one sandbox: all its memories together stay under `limit`.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: u64,
    used: u64,
    /// A grow was refused because of the limit.
    pub hit: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes in total.
    pub fn new(limit: u64) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            used: 0,
            hit: false,
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// Table elements a guest may have in one table; far above what real guests use.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self
            .used
            .saturating_sub(current as u64)
            .saturating_add(desired as u64);
        if after > self.limit {
            // Refuse the grow (memory.grow returns -1) rather than trap: a guest that
            // handles allocation failure may still report a clean error.
            self.hit = true;
            return Ok(false);
        }
        self.used = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Access to tenant-scoped shared memory, present only when granted.
pub struct KvAccess {
    /// The backend.
    pub backend: Arc<dyn KvBackend>,
    /// The task's tenant; every key the guest touches is under it.
    pub tenant: String,
}

/// Store data of one sandbox.
pub struct SandboxState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: OutboundPolicy,
    pub(crate) memory: MemoryLimiter,
    pub(crate) log: TaskLog,
    pub(crate) cpu_ticks: u64,
    pub(crate) cpu_budget_ticks: u64,
    pub(crate) cpu_exceeded: bool,
    pub(crate) kv: Option<KvAccess>,
    pub(crate) progress: Option<(Arc<dyn ProgressSink>, String)>,
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) plugin: String,
}

impl SandboxState {
    /// A state with the given WASI context and limits and no services.
    pub(crate) fn new(
        plugin: &str,
        wasi: WasiCtx,
        log: TaskLog,
        memory_limit: u64,
        cpu_budget_ticks: u64,
        outbound: OutboundPolicy,
    ) -> SandboxState {
        SandboxState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound,
            memory: MemoryLimiter::new(memory_limit),
            log,
            cpu_ticks: 0,
            cpu_budget_ticks,
            cpu_exceeded: false,
            kv: None,
            progress: None,
            config: BTreeMap::new(),
            plugin: plugin.to_string(),
        }
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for SandboxState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
