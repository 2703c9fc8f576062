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
use crate::interrupt::{Bound, Interrupt, Reason};
use crate::log::{CapturedLog, TaskLog};
use crate::manifest::Manifest;
use crate::policy::{Ceiling, Grant, Limits, RANDOM_BYTES};
use crate::runtime::Runtime;
use crate::sandbox::{new_store, run_limited};
use crate::scratch::{ScratchDir, measure};
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
        self.run_with(runtime, task, services, &Interrupt::new())
            .await
    }

    /// Runs `task` in a fresh sandbox that `interrupt` can stop (cancellation).
    pub async fn run_with(
        &self,
        runtime: &Arc<Runtime>,
        task: &Task,
        services: &TaskServices,
        interrupt: &Interrupt,
    ) -> TaskOutcome {
        self.run_under(runtime, task, services, interrupt, &Ceiling::NONE)
            .await
    }

    /// Runs `task` in a fresh sandbox granted this plugin's grant narrowed by `ceiling` (its
    /// tenant's), that `interrupt` can stop.
    pub async fn run_under(
        &self,
        runtime: &Arc<Runtime>,
        task: &Task,
        services: &TaskServices,
        interrupt: &Interrupt,
        ceiling: &Ceiling,
    ) -> TaskOutcome {
        let started = Instant::now();
        let grant = self.grant.within(ceiling);
        let limits = grant.limits;
        let log = TaskLog::new(limits.log_bytes as usize);
        let scratch = match self.scratch_dir(&grant, runtime, &task.id) {
            Ok(dir) => dir,
            Err(e) => return self.outcome(Err(e), &log, started, Duration::ZERO),
        };
        let result = self
            .run_in(
                &grant,
                runtime,
                task,
                services,
                interrupt,
                &log,
                scratch.as_ref(),
            )
            .await;
        let (result, cpu) = match result {
            Ok((result, cpu)) => (result, cpu),
            Err(e) => (Err(e), Duration::ZERO),
        };
        // A quota passed in the last moments before the guest returned still fails the task.
        let result = match (&result, &scratch) {
            (Ok(_), Some(dir)) => match scratch_over(dir.path(), &limits).await {
                Some(reason) => Err(SandboxError::from_reason(reason)),
                None => result,
            },
            _ => result,
        };
        if let Some(dir) = scratch {
            dir.remove().await;
        }
        let result = result.map_err(|e| e.bounded(limits.error_bytes as usize));
        self.outcome(result, &log, started, cpu)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_in(
        &self,
        grant: &Grant,
        runtime: &Arc<Runtime>,
        task: &Task,
        services: &TaskServices,
        interrupt: &Interrupt,
        log: &TaskLog,
        scratch: Option<&ScratchDir>,
    ) -> Result<(Result<Vec<u8>, SandboxError>, Duration), SandboxError> {
        let limits = grant.limits;
        let wasi = self.wasi_ctx(grant, log, scratch)?;
        // Stops the guest when its scratch passes a quota; ends with the run.
        let _watch = scratch.map(|dir| {
            AbortOnDrop(tokio::spawn(watch_scratch(
                dir.path().to_path_buf(),
                limits,
                interrupt.clone(),
            )))
        });
        let mut state = SandboxState::new(
            &self.manifest.name,
            wasi,
            log.clone(),
            limits,
            runtime.engine.ticks(limits.cpu),
            OutboundPolicy::new(grant.outbound_hosts.clone()),
            interrupt.clone(),
        );
        if grant.memory {
            state.kv = Some(KvAccess {
                backend: services.kv.clone(),
                tenant: task.tenant.clone(),
            });
        }
        state.progress = Some((
            services.progress.clone(),
            task.tenant.clone(),
            task.id.clone(),
        ));
        state.config = grant.config.clone();

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
        Ok((result, cpu))
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
        grant: &Grant,
        runtime: &Runtime,
        task_id: &str,
    ) -> Result<Option<ScratchDir>, SandboxError> {
        if !grant.scratch {
            return Ok(None);
        }
        let root = &crate::scratch::host_root(&runtime.policy.scratch_root);
        let prefix: String = task_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        ScratchDir::create(root, &prefix).map(Some).map_err(|e| {
            SandboxError::Setup(format!("scratch directory under {}: {e}", root.display()))
        })
    }

    fn wasi_ctx(
        &self,
        grant: &Grant,
        log: &TaskLog,
        scratch: Option<&ScratchDir>,
    ) -> Result<wasmtime_wasi::WasiCtx, SandboxError> {
        // A fresh builder grants nothing: no preopens, env, args, stdin, sockets or name lookup.
        let mut b = WasiCtxBuilder::new();
        b.stdout(log.clone())
            .stderr(log.clone())
            .max_random_size(RANDOM_BYTES);
        for (k, v) in &grant.env {
            b.env(k, v);
        }
        if let Some(dir) = scratch {
            b.preopened_dir(dir.path(), "/scratch", FsPerms::ReadWrite)
                .map_err(|e| SandboxError::Setup(format!("preopening scratch: {e:#}")))?;
        }
        for (name, path) in &grant.read_dirs {
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

/// How often a running task's scratch directory is measured. A guest can overshoot its quota
/// by what it writes in one period before it is stopped; the tree is removed right after.
const SCRATCH_CHECK: Duration = Duration::from_millis(50);

/// Raises `interrupt` once the scratch directory passes a quota.
async fn watch_scratch(path: std::path::PathBuf, limits: Limits, interrupt: Interrupt) {
    loop {
        tokio::time::sleep(SCRATCH_CHECK).await;
        if let Some(reason) = scratch_over(&path, &limits).await {
            interrupt.raise(reason);
            return;
        }
    }
}

/// Which scratch quota the directory passes, if any (measured on a blocking thread).
async fn scratch_over(path: &std::path::Path, limits: &Limits) -> Option<Reason> {
    let (path, max_bytes, max_files) = (
        path.to_path_buf(),
        limits.scratch_bytes,
        limits.scratch_files,
    );
    let usage = tokio::task::spawn_blocking(move || measure(&path, max_bytes, max_files))
        .await
        .ok()?;
    if usage.bytes > max_bytes {
        Some(Reason::Limit {
            bound: Bound::ScratchBytes,
            limit: max_bytes,
        })
    } else if usage.entries > max_files || usage.unmeasurable {
        Some(Reason::Limit {
            bound: Bound::ScratchFiles,
            limit: max_files,
        })
    } else {
        None
    }
}

/// Aborts a background task when the run that needs it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
