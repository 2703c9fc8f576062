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
use crate::interrupt::Interrupt;
use crate::log::TaskLog;
use crate::policy::{HTTP_FIELDS_BYTES, Limits};
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
    /// The sink, the task's tenant and id.
    pub(crate) progress: Option<(Arc<dyn ProgressSink>, String, String)>,
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) plugin: String,
    /// Raised to stop the sandbox (cancel, a bound passed); checked on every epoch tick.
    pub(crate) interrupt: Interrupt,
    pub(crate) limits: Limits,
    /// Shared-memory writes and bytes so far, against `limits.memory_writes`/`_bytes`.
    pub(crate) kv_writes: u64,
    pub(crate) kv_bytes: u64,
}

impl SandboxState {
    /// A state with the given WASI context and limits and no services.
    pub(crate) fn new(
        plugin: &str,
        wasi: WasiCtx,
        log: TaskLog,
        limits: Limits,
        cpu_budget_ticks: u64,
        outbound: OutboundPolicy,
        interrupt: Interrupt,
    ) -> SandboxState {
        // Every host-side object a guest creates lives in this table: capping its size caps
        // the descriptors and host memory the guest can make the host hold.
        let mut table = ResourceTable::new();
        table.set_max_capacity(usize::try_from(limits.host_handles).unwrap_or(usize::MAX));
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(HTTP_FIELDS_BYTES);
        SandboxState {
            wasi,
            table,
            http,
            outbound,
            memory: MemoryLimiter::new(limits.memory_bytes),
            log,
            cpu_ticks: 0,
            cpu_budget_ticks,
            cpu_exceeded: false,
            kv: None,
            progress: None,
            config: BTreeMap::new(),
            plugin: plugin.to_string(),
            interrupt,
            limits,
            kv_writes: 0,
            kv_bytes: 0,
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
