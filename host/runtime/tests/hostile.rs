//! The hostile plugin: every attack ends in a typed error or a denial, and the host
//! runs the next normal task as if nothing happened.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sentinel_runtime::{ExecutorPlugin, HostPolicy, Manifest, Runtime, SandboxError, TaskServices};
use serde_json::json;
use support::*;

struct Hostile {
    rt: Arc<Runtime>,
    plugin: Arc<ExecutorPlugin>,
    services: TaskServices,
    _ro: tempfile::TempDir,
}

/// The hostile guest with the grant its manifest asks for, under a policy that allows it
/// scratch, shared memory, one read-only dir, one env var and one outbound host, and tweaks
/// from `edit`.
fn hostile_with(edit: impl FnOnce(&mut Manifest)) -> Hostile {
    let ro = tempdir();
    std::fs::write(ro.path().join("readme.txt"), "read-only data").unwrap();
    let mut policy = HostPolicy {
        allow_scratch: true,
        allow_memory: true,
        ..HostPolicy::default()
    };
    policy
        .read_dirs
        .insert("ro".into(), ro.path().to_path_buf());
    policy
        .env
        .insert("GRANTED_VAR".into(), "granted-value".into());
    policy
        .env
        .insert("SECRET_VAR".into(), "must-not-leak".into());
    policy.outbound_hosts.push("allowed.test".into());
    let rt = runtime(policy);
    let mut manifest = manifest(hostile_dir(), "hostile");
    edit(&mut manifest);
    let plugin = executor_with(&rt, manifest, &wasm(hostile_dir(), "hostile"));
    Hostile {
        rt,
        plugin,
        services: TaskServices::in_memory(),
        _ro: ro,
    }
}

fn hostile() -> Hostile {
    hostile_with(|_| {})
}

impl Hostile {
    async fn attack(&self, payload: serde_json::Value) -> Result<Vec<u8>, SandboxError> {
        self.plugin
            .run(&self.rt, &task("hostile", payload), &self.services)
            .await
            .result
    }

    /// The host is unaffected: a normal task on the same runtime and plugin succeeds.
    async fn still_serves(&self) {
        let out = self
            .attack(json!({"attack": "ok"}))
            .await
            .expect("the next normal task succeeds");
        assert_eq!(json(&out), json!({"ok": true}));
    }
}

fn denied(result: Result<Vec<u8>, SandboxError>) -> String {
    match result {
        Err(SandboxError::TaskFailed { message, .. }) => message,
        other => panic!("expected the guest to report a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn an_infinite_loop_hits_the_cpu_limit() {
    let h = hostile_with(|m| {
        m.limits.cpu_ms = Some(300);
        m.limits.timeout_ms = Some(20_000);
    });
    let started = Instant::now();
    let err = h.attack(json!({"attack": "loop"})).await.unwrap_err();
    assert_eq!(err, SandboxError::CpuLimit(Duration::from_millis(300)));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped near the deadline, took {:?}",
        started.elapsed()
    );
    h.still_serves().await;
}

#[tokio::test]
async fn an_infinite_loop_hits_the_wall_clock_timeout_when_that_comes_first() {
    let h = hostile_with(|m| {
        m.limits.cpu_ms = Some(60_000);
        m.limits.timeout_ms = Some(300);
    });
    let err = h.attack(json!({"attack": "loop"})).await.unwrap_err();
    assert_eq!(err, SandboxError::Timeout(Duration::from_millis(300)));
    h.still_serves().await;
}

#[tokio::test]
async fn a_memory_bomb_is_out_of_memory() {
    let h = hostile();
    let err = h
        .attack(json!({"attack": "memory-bomb"}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SandboxError::OutOfMemory {
            limit_bytes: 32 << 20
        }
    );
    h.still_serves().await;
}

#[tokio::test]
async fn reading_etc_passwd_is_denied() {
    let h = hostile();
    let message = denied(h.attack(json!({"attack": "read-passwd"})).await);
    assert!(message.contains("denied"), "{message}");
    h.still_serves().await;
}

#[tokio::test]
async fn escaping_the_scratch_dir_is_denied() {
    let h = hostile();
    let message = denied(h.attack(json!({"attack": "escape-scratch"})).await);
    assert!(message.contains("all attempts denied"), "{message}");
    // Scratch itself works.
    let out = h
        .attack(json!({"attack": "scratch-write"}))
        .await
        .expect("scratch is writable");
    assert_eq!(json(&out)["ok"], json!(true));
    h.still_serves().await;
}

#[tokio::test]
async fn scratch_is_private_and_removed_after_the_task() {
    let scratch_root = tempdir();
    let h = hostile();
    // A runtime whose scratch root we can inspect.
    let mut policy = h.rt.policy().clone();
    policy.scratch_root = scratch_root.path().to_path_buf();
    let rt = runtime(policy);
    let plugin = executor_with(
        &rt,
        manifest(hostile_dir(), "hostile"),
        &wasm(hostile_dir(), "hostile"),
    );
    let out = plugin
        .run(
            &rt,
            &task("hostile", json!({"attack": "scratch-write"})),
            &h.services,
        )
        .await;
    out.result.expect("scratch write");
    let left: Vec<_> = std::fs::read_dir(sentinel_runtime::scratch::host_root(scratch_root.path()))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "scratch directories left behind: {left:?}");
}

#[tokio::test]
async fn without_the_scratch_grant_there_is_no_scratch() {
    let h = hostile_with(|m| m.capabilities.scratch = false);
    denied(h.attack(json!({"attack": "scratch-write"})).await);
    h.still_serves().await;
}

#[tokio::test]
async fn writing_into_a_read_only_dir_is_denied() {
    let h = hostile();
    let message = denied(h.attack(json!({"attack": "write-readonly"})).await);
    assert!(message.contains("denied"), "{message}");
    assert!(!h._ro.path().join("x").exists());
    h.still_serves().await;
}

#[tokio::test]
async fn only_granted_env_vars_are_visible() {
    let h = hostile();
    let granted = h
        .attack(json!({"attack": "read-env", "var": "GRANTED_VAR"}))
        .await
        .unwrap();
    assert_eq!(json(&granted), json!({"value": "granted-value"}));
    // Allowed by the policy but not asked for by the manifest: invisible.
    let secret = h
        .attack(json!({"attack": "read-env", "var": "SECRET_VAR"}))
        .await
        .unwrap();
    assert_eq!(json(&secret), json!({"value": null}));
    // The host's own environment never leaks.
    let path = h
        .attack(json!({"attack": "read-env", "var": "PATH"}))
        .await
        .unwrap();
    assert_eq!(json(&path), json!({"value": null}));
}

#[tokio::test]
async fn a_100_mb_output_is_rejected() {
    // Enough memory to build the output, so the output limit (1 MiB) is what stops it.
    let h = hostile_with(|m| m.limits.memory_mb = Some(256));
    let err = h.attack(json!({"attack": "big-output"})).await.unwrap_err();
    assert_eq!(
        err,
        SandboxError::OutputTooLarge {
            size: 100 << 20,
            limit: 1 << 20
        }
    );
    h.still_serves().await;
}

#[tokio::test]
async fn deep_recursion_traps() {
    let h = hostile();
    match h
        .attack(json!({"attack": "deep-recursion"}))
        .await
        .unwrap_err()
    {
        // Depending on which stack runs out first: the engine's call stack (stack overflow)
        // or the guest's shadow stack in linear memory (an out-of-bounds access below 0).
        SandboxError::Trap { message } => {
            assert!(
                message.contains("stack overflow") || message.contains("out of bounds"),
                "{message}"
            )
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    h.still_serves().await;
}

#[tokio::test]
async fn a_panic_traps_with_its_message() {
    let h = hostile();
    match h.attack(json!({"attack": "panic"})).await.unwrap_err() {
        SandboxError::Trap { message } => {
            assert!(message.contains("hostile panic: boom"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    h.still_serves().await;
}

#[tokio::test]
async fn outbound_http_to_an_unlisted_host_is_denied() {
    let h = hostile();
    let message = denied(
        h.attack(json!({"attack": "http", "url": "http://127.0.0.1:9/"}))
            .await,
    );
    assert!(message.to_lowercase().contains("denied"), "{message}");
    // A listed host passes the allow-list (and then fails to resolve: `.test` never does).
    let message = denied(
        h.attack(json!({"attack": "http", "url": "http://allowed.test/"}))
            .await,
    );
    assert!(!message.to_lowercase().contains("denied"), "{message}");
    h.still_serves().await;
}

#[tokio::test]
async fn without_an_outbound_grant_every_host_is_denied() {
    let h = hostile_with(|m| m.capabilities.outbound_hosts.clear());
    let message = denied(
        h.attack(json!({"attack": "http", "url": "http://allowed.test/"}))
            .await,
    );
    assert!(message.to_lowercase().contains("denied"), "{message}");
}

#[tokio::test]
async fn a_log_flood_is_truncated_not_fatal() {
    let h = hostile_with(|m| m.limits.log_kb = Some(64));
    let out = h
        .plugin
        .run(
            &h.rt,
            &task("hostile", json!({"attack": "log-flood", "lines": 2000})),
            &h.services,
        )
        .await;
    assert_eq!(
        json(&out.result.expect("logging too much is not an error")),
        json!({"logged": 2000})
    );
    assert!(out.log.text.len() <= 64 << 10);
    assert!(
        out.log.dropped_bytes > 1_000_000,
        "dropped {}",
        out.log.dropped_bytes
    );
}

#[tokio::test]
async fn shared_memory_is_scoped_to_the_tenant() {
    let h = hostile();
    let set = |tenant: &str, value: serde_json::Value| {
        task_for(
            tenant,
            "hostile",
            json!({"attack": "kv", "bucket": "shared", "key": "k", "value": value}),
        )
    };
    let a = h
        .plugin
        .run(&h.rt, &set("tenant-a", json!("from-a")), &h.services)
        .await
        .result
        .unwrap();
    let b = h
        .plugin
        .run(&h.rt, &set("tenant-b", json!("from-b")), &h.services)
        .await
        .result
        .unwrap();
    assert_eq!(json(&a), json!({"value": "from-a"}));
    assert_eq!(json(&b), json!({"value": "from-b"}));
    let stored_a = h
        .services
        .kv
        .get("tenant-a", "shared", "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json(&stored_a), json!("from-a"));
}

#[tokio::test]
async fn shared_memory_needs_the_grant() {
    let h = hostile_with(|m| m.capabilities.memory = false);
    let message = denied(h.attack(json!({"attack": "kv"})).await);
    assert!(message.to_lowercase().contains("denied"), "{message}");
}

#[tokio::test]
async fn many_attacks_in_a_row_leave_the_host_serving() {
    let h = hostile_with(|m| m.limits.cpu_ms = Some(200));
    for attack in [
        "loop",
        "memory-bomb",
        "deep-recursion",
        "panic",
        "read-passwd",
        "escape-scratch",
    ] {
        assert!(
            h.attack(json!({"attack": attack})).await.is_err(),
            "{attack} must fail"
        );
    }
    h.still_serves().await;
}
