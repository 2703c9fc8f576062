//! The hostile plugin against the host's resources: every bound on what a guest can make the
//! host hold ends the task with `RESOURCE_LIMIT` naming the bound (or cuts what is kept, for
//! error messages), the scratch tree is gone afterwards, and the next normal task runs.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sentinel_runtime::{
    ExecutorPlugin, HostPolicy, Interrupt, Manifest, Runtime, SandboxError, TaskServices,
};
use serde_json::json;
use support::*;

struct Host {
    rt: Arc<Runtime>,
    plugin: Arc<ExecutorPlugin>,
    services: TaskServices,
    scratch_root: PathBuf,
    _dir: tempfile::TempDir,
}

fn host_with(edit: impl FnOnce(&mut Manifest)) -> Host {
    let dir = tempdir();
    let scratch_root = dir.path().join("scratch");
    let policy = HostPolicy {
        scratch_root: scratch_root.clone(),
        allow_scratch: true,
        allow_memory: true,
        ..HostPolicy::default()
    };
    let rt = runtime(policy);
    let mut manifest = manifest(hostile_dir(), "hostile");
    manifest.capabilities.read_dirs.clear();
    manifest.limits.timeout_ms = Some(30_000);
    manifest.limits.cpu_ms = Some(20_000);
    edit(&mut manifest);
    let plugin = executor_with(&rt, manifest, &wasm(hostile_dir(), "hostile"));
    Host {
        rt,
        plugin,
        services: TaskServices::in_memory(),
        scratch_root,
        _dir: dir,
    }
}

impl Host {
    async fn attack(&self, payload: serde_json::Value) -> Result<Vec<u8>, SandboxError> {
        self.plugin
            .run(&self.rt, &task("hostile", payload), &self.services)
            .await
            .result
    }

    /// Nothing is left in the scratch root and a normal task still runs.
    async fn unharmed(&self) {
        let mine = sentinel_runtime::scratch::host_root(&self.scratch_root);
        let left: Vec<_> = std::fs::read_dir(&mine)
            .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "scratch left behind: {left:?}");
        let out = self
            .attack(json!({"attack": "ok"}))
            .await
            .expect("normal task");
        assert_eq!(json(&out), json!({"ok": true}));
    }
}

fn limit(bound: &'static str, value: u64) -> SandboxError {
    SandboxError::LimitExceeded {
        bound,
        limit: value,
    }
}

#[tokio::test]
async fn a_tree_deeper_than_any_path_is_stopped_and_removed_without_recursion() {
    let h = host_with(|_| {});
    let err = h
        .attack(json!({"attack": "deep-tree", "depth": 20_000}))
        .await
        .unwrap_err();
    assert_eq!(err, limit("scratch-files", 4096));
    h.unharmed().await;
}

#[tokio::test]
async fn a_deep_tree_within_the_quotas_runs_and_is_removed_after_the_task() {
    let h = host_with(|_| {});
    // 200 levels of directory + file: 400 entries, under both the file bound and the
    // 256-level measuring depth, so the task completes and its tree goes with it.
    let out = h
        .attack(json!({"attack": "deep-tree", "depth": 200}))
        .await
        .expect("a tree within the quotas is allowed");
    assert_eq!(json(&out), json!({"depth": 200}));
    h.unharmed().await;
}

#[tokio::test]
async fn a_descriptor_flood_hits_the_host_handle_bound() {
    let h = host_with(|_| {});
    let err = h
        .attack(json!({"attack": "fd-flood", "files": 100_000}))
        .await
        .unwrap_err();
    assert_eq!(err, limit("host-handles", 128));
    h.unharmed().await;
}

#[tokio::test]
async fn hoarding_http_objects_hits_the_host_handle_bound() {
    let h = host_with(|m| m.limits.host_handles = Some(64));
    let err = h
        .attack(json!({"attack": "handle-hoard", "handles": 100_000}))
        .await
        .unwrap_err();
    assert_eq!(err, limit("host-handles", 64));
    h.unharmed().await;
}

#[tokio::test]
async fn a_huge_error_message_is_cut_to_the_error_bound() {
    let h = host_with(|_| {});
    let err = h
        .attack(json!({"attack": "huge-error", "bytes": 8 << 20}))
        .await
        .unwrap_err();
    match err {
        SandboxError::TaskFailed { message, .. } => {
            assert!(message.len() < (16 << 10) + 100, "{} bytes", message.len());
            assert!(
                message.ends_with("more bytes cut]"),
                "{}",
                &message[16000..]
            );
        }
        other => panic!("expected a task failure, got {other:?}"),
    }
    h.unharmed().await;
}

#[tokio::test]
async fn a_key_flood_hits_the_shared_memory_write_bound() {
    let h = host_with(|_| {});
    let err = h
        .attack(json!({"attack": "key-flood", "keys": 100_000}))
        .await
        .unwrap_err();
    assert_eq!(err, limit("memory-writes", 1000));
    h.unharmed().await;
}

#[tokio::test]
async fn a_disk_flood_hits_the_scratch_byte_quota() {
    let h = host_with(|m| m.limits.scratch_mb = Some(8));
    let err = h
        .attack(json!({"attack": "disk-flood", "mib": 4096}))
        .await
        .unwrap_err();
    assert_eq!(err, limit("scratch-bytes", 8 << 20));
    h.unharmed().await;
}

#[tokio::test]
async fn a_sparse_file_counts_at_its_full_size() {
    let h = host_with(|_| {});
    let err = h
        .attack(json!({"attack": "sparse-file", "bytes": 1u64 << 40}))
        .await
        .unwrap_err();
    assert_eq!(err, limit("scratch-bytes", 64 << 20));
    h.unharmed().await;
}

#[tokio::test]
async fn cancelling_stops_a_guest_that_waits_in_the_host() {
    let h = host_with(|_| {});
    let interrupt = Interrupt::new();
    let canceller = {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            interrupt.cancel();
        })
    };
    let started = Instant::now();
    let outcome = h
        .plugin
        .run_with(
            &h.rt,
            &task("hostile", json!({"attack": "wait", "ms": 60_000})),
            &h.services,
            &interrupt,
        )
        .await;
    canceller.await.unwrap();
    assert_eq!(outcome.result.unwrap_err(), SandboxError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(10));
    h.unharmed().await;
}

#[tokio::test]
async fn cancelling_stops_a_spinning_guest_within_a_tick() {
    let h = host_with(|_| {});
    let interrupt = Interrupt::new();
    let spin = task("hostile", json!({"attack": "loop"}));
    let run = h.plugin.run_with(&h.rt, &spin, &h.services, &interrupt);
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        interrupt.cancel();
        Instant::now()
    };
    let (outcome, cancelled_at) = tokio::join!(run, cancel);
    assert_eq!(outcome.result.unwrap_err(), SandboxError::Cancelled);
    // A spinning guest yields every tick, so the run ends right after the cancel.
    assert!(cancelled_at.elapsed() < Duration::from_secs(5));
    h.unharmed().await;
}
