//! Executor plugins: one fresh sandbox per task.
//!
//! An `ExecutorPlugin` is immutable once loaded; a task holds an `Arc` to the version it
//! started on, so replacing the plugin never disturbs running tasks. Running a task
//! never panics and never returns a wasmtime error: every failure is a `SandboxError`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::bindings::Task;
use crate::bindings::executor::ExecutorPre;
use crate::error::SandboxError;
use crate::host::http::OutboundPolicy;
use crate::log::{CapturedLog, TaskLog};
use crate::manifest::Manifest;
use crate::policy::Grant;
use crate::runtime::Runtime;
use crate::sandbox::{new_store, run_limited};
use crate::services::TaskServices;
use crate::state::{KvAccess, SandboxState};

/// What one run of a task produced.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// The output bytes, or why there are none.
    pub result: Result<Vec<u8>, SandboxError>,
    /// Everything the guest logged (bounded).
    pub log: CapturedLog,
    /// Wall-clock time of the run, instantiation included.
    pub duration: Duration,
    /// CPU time charged to the guest (epoch ticks while executing).
    pub cpu: Duration,
}

/// A loaded executor, ready to instantiate.
pub struct ExecutorPlugin {
    manifest: Manifest,
    grant: Grant,
    sha256: String,
    pre: ExecutorPre<SandboxState>,
}

impl ExecutorPlugin {
    pub(crate) fn new(
        manifest: Manifest,
        grant: Grant,
        sha256: String,
        pre: ExecutorPre<SandboxState>,
    ) -> ExecutorPlugin {
        ExecutorPlugin {
            manifest,
            grant,
            sha256,
            pre,
        }
    }

    /// The manifest it was loaded with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What it is granted on this host.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// SHA-256 of its `.wasm`.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Runs `task` in a fresh sandbox.
    pub async fn run(
        &self,
        runtime: &Arc<Runtime>,
        task: &Task,
        services: &TaskServices,
    ) -> TaskOutcome {
        let started = Instant::now();
        let limits = self.grant.limits;
        let log = TaskLog::new(limits.log_bytes as usize);
        // Held until the end of the run: dropping it removes the scratch directory.
        let scratch = match self.scratch_dir(runtime, &task.id) {
            Ok(dir) => dir,
            Err(e) => return self.outcome(Err(e), &log, started, Duration::ZERO),
        };
        let wasi = match self.wasi_ctx(&log, scratch.as_ref()) {
            Ok(ctx) => ctx,
            Err(e) => return self.outcome(Err(e), &log, started, Duration::ZERO),
        };
        let mut state = SandboxState::new(
            &self.manifest.name,
            wasi,
            log.clone(),
            limits.memory_bytes,
            runtime.engine.ticks(limits.cpu),
            OutboundPolicy::new(self.grant.outbound_hosts.clone()),
        );
        if self.grant.memory {
            state.kv = Some(KvAccess {
                backend: services.kv.clone(),
                tenant: task.tenant.clone(),
            });
        }
        state.progress = Some((services.progress.clone(), task.id.clone()));
        state.config = self.grant.config.clone();

        let mut store = new_store(&runtime.engine, state);
        let result = run_limited(&mut store, &limits, async |store| {
            let instance = self.pre.instantiate_async(&mut *store).await?;
            instance.call_run(&mut *store, task).await
        })
        .await;
        let result = match result {
            Ok(Ok(output)) if output.len() as u64 > limits.output_bytes => {
                Err(SandboxError::OutputTooLarge {
                    size: output.len() as u64,
                    limit: limits.output_bytes,
                })
            }
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(SandboxError::TaskFailed {
                message: e.message,
                retryable: e.retryable,
            }),
            Err(e) => Err(e),
        };
        let cpu = runtime.engine.tick() * store.data().cpu_ticks as u32;
        drop(store);
        drop(scratch);
        self.outcome(result, &log, started, cpu)
    }

    fn outcome(
        &self,
        result: Result<Vec<u8>, SandboxError>,
        log: &TaskLog,
        started: Instant,
        cpu: Duration,
    ) -> TaskOutcome {
        TaskOutcome {
            result,
            log: log.snapshot(),
            duration: started.elapsed(),
            cpu,
        }
    }

    fn scratch_dir(
        &self,
        runtime: &Runtime,
        task_id: &str,
    ) -> Result<Option<tempfile::TempDir>, SandboxError> {
        if !self.grant.scratch {
            return Ok(None);
        }
        let root = &runtime.policy.scratch_root;
        std::fs::create_dir_all(root)
            .and_then(|_| {
                let prefix: String = task_id
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .take(40)
                    .collect();
                tempfile::Builder::new()
                    .prefix(&format!("{prefix}-"))
                    .tempdir_in(root)
            })
            .map(Some)
            .map_err(|e| {
                SandboxError::Setup(format!("scratch directory under {}: {e}", root.display()))
            })
    }

    fn wasi_ctx(
        &self,
        log: &TaskLog,
        scratch: Option<&tempfile::TempDir>,
    ) -> Result<wasmtime_wasi::WasiCtx, SandboxError> {
        // A fresh builder grants nothing: no preopens, env, args, stdin, sockets or name lookup.
        let mut b = WasiCtxBuilder::new();
        b.stdout(log.clone()).stderr(log.clone());
        for (k, v) in &self.grant.env {
            b.env(k, v);
        }
        if let Some(dir) = scratch {
            b.preopened_dir(dir.path(), "/scratch", FsPerms::ReadWrite)
                .map_err(|e| SandboxError::Setup(format!("preopening scratch: {e:#}")))?;
        }
        for (name, path) in &self.grant.read_dirs {
            b.preopened_dir(path, format!("/{name}"), FsPerms::ReadOnly)
                .map_err(|e| {
                    SandboxError::Setup(format!(
                        "preopening read-only dir {name} ({}): {e:#}",
                        path.display()
                    ))
                })?;
        }
        Ok(b.build())
    }
}
