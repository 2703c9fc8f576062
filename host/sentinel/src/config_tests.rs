//! Tests of the host configuration: the seed's keys, precedence, refusals naming the key.
use super::*;

fn resolve(o: Overrides) -> anyhow::Result<Settings> {
    Settings::resolve(o, || PathBuf::from("plugins"))
}

#[test]
fn defaults_follow_the_seed() {
    let s = resolve(Overrides::default()).unwrap();
    assert_eq!(s.coord.locking.ttl_seconds, 300);
    assert_eq!(s.coord.locking.retry_attempts, 3);
    assert_eq!(s.coord.heartbeat.interval_ms, 30_000);
    assert_eq!(s.max_tasks, 10);
    assert_eq!(s.strategy, "least_loaded");
    assert_eq!(s.listen.to_string(), "127.0.0.1:7070");
    assert!(s.store_url.starts_with("sqlite://"));
}

#[test]
fn the_seed_config_file_is_read_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task-sentinel.config.json");
    unsafe { std::env::set_var("SENTINEL_TEST_WORKER", "worker-from-env") };
    std::fs::write(
        &path,
        r#"{"distributed": {"enabled": true, "workerId": "${SENTINEL_TEST_WORKER}",
            "locking": {"ttlSeconds": 60, "retryAttempts": 5, "retryDelayMs": 10, "cleanupIntervalMs": 1000},
            "heartbeat": {"intervalMs": 1000, "staleThresholdMs": 3000, "recoveryEnabled": true},
            "loadBalancer": {"strategy": "round_robin", "affinityEnabled": true, "rebalanceIntervalMs": 60000},
            "memorySync": {"intervalMs": 500, "conflictResolution": "last_write_wins", "cacheSize": 10, "namespaces": ["swarm"]}},
           "capacity": {"maxConcurrentTasks": 4, "cpuCores": 2, "memoryMb": 1024, "supportedTaskTypes": ["echo"]}}"#,
    )
    .unwrap();
    let s = resolve(Overrides {
        config_file: Some(path.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.worker_id, "worker-from-env");
    assert_eq!(s.coord.locking.ttl_seconds, 60);
    assert_eq!(s.coord.heartbeat.stale_threshold_ms, 3000);
    assert_eq!(s.strategy, "round_robin");
    assert_eq!(s.max_tasks, 4);
    assert_eq!(s.task_types, Some(vec!["echo".to_string()]));
    let s = resolve(Overrides {
        config_file: Some(path),
        max_tasks: Some(8),
        strategy: Some("random".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.max_tasks, 8);
    assert_eq!(s.strategy, "random");
}

#[test]
fn an_unknown_key_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    std::fs::write(&path, r#"{"distributed": {"locking": {"ttlSecs": 5}}}"#).unwrap();
    let err = format!(
        "{:#}",
        resolve(Overrides {
            config_file: Some(path),
            ..Default::default()
        })
        .unwrap_err()
    );
    assert!(err.contains("ttlSecs"), "{err}");
}

#[test]
fn invalid_values_are_refused_naming_the_key() {
    let err = resolve(Overrides {
        max_tasks: Some(0),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("WORKER_MAX_TASKS"), "{err}");
    let err = resolve(Overrides {
        strategy: Some("fastest".into()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("LOAD_BALANCE_STRATEGY"), "{err}");
    let err = resolve(Overrides {
        heartbeat_interval_ms: Some(1000),
        stale_threshold_ms: Some(500),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("STALE_WORKER_THRESHOLD_MS"), "{err}");
    let err = resolve(Overrides {
        listen: Some("nope".into()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("--listen"), "{err}");
}

#[test]
fn http_limits_have_defaults_and_are_read_from_the_file() {
    let s = resolve(Overrides::default()).unwrap();
    assert_eq!(s.http.header_timeout, Duration::from_secs(10));
    assert_eq!(s.http.max_connections, 1024);
    assert_eq!(s.http.max_body_bytes, 64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    std::fs::write(
        &path,
        r#"{"http": {"headerTimeoutMs": 2000, "maxConnections": 8, "maxUriBytes": 4096}}"#,
    )
    .unwrap();
    let s = resolve(Overrides {
        config_file: Some(path.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.http.header_timeout, Duration::from_millis(2000));
    assert_eq!((s.http.max_connections, s.http.max_uri_bytes), (8, 4096));
    std::fs::write(&path, r#"{"http": {"maxConnections": 0}}"#).unwrap();
    let err = resolve(Overrides {
        config_file: Some(path),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("http.maxConnections"), "{err}");
}

#[test]
fn a_public_address_without_tokens_is_refused_unless_insecure() {
    let err = resolve(Overrides {
        listen: Some("0.0.0.0:7070".into()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("sentinel tokens new"), "{err}");
    assert!(err.contains("--insecure-no-auth"), "{err}");
    let s = resolve(Overrides {
        listen: Some("0.0.0.0:7070".into()),
        insecure_no_auth: true,
        ..Default::default()
    })
    .unwrap();
    assert!(!s.tenancy.auth_enabled());
    assert!(
        resolve(Overrides::default()).is_ok(),
        "loopback needs no setup"
    );
}

#[test]
fn the_sandbox_policy_allows_nothing_by_default() {
    let s = resolve(Overrides::default()).unwrap();
    assert!(!s.policy.allow_scratch && !s.policy.allow_memory);
    assert!(s.policy.outbound_hosts.is_empty() && s.policy.env.is_empty());
}

#[test]
fn toml_works_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[distributed.heartbeat]\nintervalMs = 1000\n[capacity]\nmaxConcurrentTasks = 3\n",
    )
    .unwrap();
    let s = resolve(Overrides {
        config_file: Some(path),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.max_tasks, 3);
    assert_eq!(s.coord.heartbeat.interval_ms, 1000);
}
