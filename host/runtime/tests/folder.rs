//! The plugin folder: plugins are data, hot-reloaded, and a broken one never takes the
//! host down or displaces the version in service.

mod support;

use std::path::Path;
use std::time::Duration;

use sentinel_runtime::{HostPolicy, PluginFolder, Runtime, RuntimeConfig, TaskServices};
use serde_json::json;
use support::*;

/// Waits (bounded) until `done` holds, re-checking after every rescan of the folder.
async fn eventually(folder: &PluginFolder, what: &str, done: impl Fn(&PluginFolder) -> bool) {
    let mut generations = folder.generations();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(folder) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for: {what}; plugins: {:?}",
            folder.list()
        );
        let _ =
            tokio::time::timeout(left.min(Duration::from_millis(500)), generations.changed()).await;
    }
}

fn error_of(folder: &PluginFolder, name: &str) -> Option<String> {
    folder
        .list()
        .into_iter()
        .find(|p| p.name == name)
        .and_then(|p| p.error)
}

fn version_of(folder: &PluginFolder, name: &str) -> Option<String> {
    folder
        .list()
        .into_iter()
        .find(|p| p.name == name)
        .and_then(|p| p.version)
}

fn write_manifest(dir: &Path, name: &str, edit: impl FnOnce(String) -> String) {
    let path = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

#[tokio::test]
async fn all_plugins_in_the_folder_load_at_start() {
    let rt = runtime(HostPolicy::default());
    let folder = PluginFolder::open(rt, examples_dir()).await.unwrap();
    for t in ["echo", "sha256", "word-count", "sleep"] {
        assert!(
            folder.executor_for(t).is_some(),
            "no executor for {t}: {:?}",
            folder.list()
        );
    }
    assert!(folder.strategy("weighted-score").is_some());
    assert!(folder.strategy("least-active").is_some());
    assert!(
        folder.list().iter().all(|p| p.error.is_none()),
        "{:?}",
        folder.list()
    );
}

#[tokio::test]
async fn adding_replacing_and_removing_take_effect_without_a_restart() {
    let dir = tempdir();
    copy_plugin(examples_dir(), "echo", dir.path());
    let rt = runtime(HostPolicy::default());
    let folder = PluginFolder::open(rt.clone(), dir.path()).await.unwrap();
    let _watch = folder.watch().unwrap();
    assert!(folder.executor_for("sha256").is_none());

    copy_plugin(examples_dir(), "sha256", dir.path());
    eventually(&folder, "sha256 added", |f| {
        f.executor_for("sha256").is_some()
    })
    .await;

    // A task that started on the old version keeps it.
    let old = folder.executor_for("echo").unwrap();
    write_manifest(dir.path(), "echo", |t| {
        t.replace("version = \"0.1.0\"", "version = \"0.2.0\"")
    });
    eventually(&folder, "echo 0.2.0", |f| {
        version_of(f, "echo").as_deref() == Some("0.2.0")
    })
    .await;
    assert_eq!(old.manifest().version, "0.1.0");
    let out = old
        .run(
            &rt,
            &task("echo", json!("still here")),
            &TaskServices::in_memory(),
        )
        .await;
    assert_eq!(json(&out.result.unwrap()), json!("still here"));

    std::fs::remove_file(dir.path().join("echo.wasm")).unwrap();
    eventually(&folder, "echo removed", |f| {
        f.executor_for("echo").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_previous_version_in_service() {
    let dir = tempdir();
    copy_plugin(examples_dir(), "echo", dir.path());
    let rt = runtime(HostPolicy::default());
    let folder = PluginFolder::open(rt.clone(), dir.path()).await.unwrap();
    let _watch = folder.watch().unwrap();
    let serving = folder.executor_for("echo").unwrap().sha256().to_string();

    std::fs::write(dir.path().join("echo.wasm"), b"definitely not wasm").unwrap();
    eventually(&folder, "echo rejected", |f| error_of(f, "echo").is_some()).await;
    let error = error_of(&folder, "echo").unwrap();
    assert!(error.contains("not a WebAssembly file"), "{error}");
    let still = folder
        .executor_for("echo")
        .expect("the previous version stays");
    assert_eq!(still.sha256(), serving);
    let out = still
        .run(&rt, &task("echo", json!(1)), &TaskServices::in_memory())
        .await;
    assert_eq!(json(&out.result.unwrap()), json!(1));

    // Repairing the file clears the error.
    std::fs::copy(
        examples_dir().join("echo.wasm"),
        dir.path().join("echo.wasm"),
    )
    .unwrap();
    eventually(&folder, "echo repaired", |f| error_of(f, "echo").is_none()).await;
}

#[tokio::test]
async fn invalid_plugins_are_rejected_with_a_clear_error() {
    let dir = tempdir();
    let d = dir.path();
    // Bad manifest: unknown key.
    copy_plugin(examples_dir(), "echo", d);
    write_manifest(d, "echo", |t| format!("{t}\nnetwork = true\n"));
    // Wrong world: a strategy's wasm under an executor manifest.
    copy_plugin(examples_dir(), "sha256", d);
    std::fs::copy(
        examples_dir().join("weighted-score.wasm"),
        d.join("sha256.wasm"),
    )
    .unwrap();
    // Hash mismatch.
    copy_plugin(examples_dir(), "word-count", d);
    write_manifest(d, "word-count", |t| {
        format!("sha256 = \"{}\"\n{t}", "0".repeat(64))
    });
    // Not wasm at all.
    copy_plugin(examples_dir(), "sleep", d);
    std::fs::write(d.join("sleep.wasm"), b"\x7fELF").unwrap();
    // One good plugin among them.
    copy_plugin(examples_dir(), "least-active", d);

    let folder = PluginFolder::open(runtime(HostPolicy::default()), d)
        .await
        .unwrap();
    let e = error_of(&folder, "echo").unwrap();
    assert!(
        e.contains("invalid manifest") && e.contains("network"),
        "{e}"
    );
    let e = error_of(&folder, "sha256").unwrap();
    assert!(
        e.contains("does not implement world `sentinel:plugin/executor"),
        "{e}"
    );
    let e = error_of(&folder, "word-count").unwrap();
    assert!(e.contains("sha256 mismatch"), "{e}");
    let e = error_of(&folder, "sleep").unwrap();
    assert!(e.contains("not a WebAssembly file"), "{e}");
    assert!(folder.strategy("least-active").is_some());
    assert!(folder.task_types().is_empty());
}

#[tokio::test]
async fn a_correct_pin_is_accepted_and_a_required_pin_is_enforced() {
    let dir = tempdir();
    copy_plugin(examples_dir(), "echo", dir.path());
    let policy = HostPolicy {
        require_sha256_pin: true,
        ..HostPolicy::default()
    };
    let folder = PluginFolder::open(runtime(policy.clone()), dir.path())
        .await
        .unwrap();
    assert!(
        error_of(&folder, "echo")
            .unwrap()
            .contains("requires a `sha256` pin")
    );

    use sha2::Digest;
    let pin = hex::encode(sha2::Sha256::digest(
        std::fs::read(dir.path().join("echo.wasm")).unwrap(),
    ));
    write_manifest(dir.path(), "echo", |t| format!("sha256 = \"{pin}\"\n{t}"));
    let folder = PluginFolder::open(runtime(policy), dir.path())
        .await
        .unwrap();
    assert!(folder.executor_for("echo").is_some(), "{:?}", folder.list());
}

#[tokio::test]
async fn two_plugins_cannot_serve_the_same_task_type() {
    let dir = tempdir();
    copy_plugin(examples_dir(), "echo", dir.path());
    copy_plugin(examples_dir(), "sha256", dir.path());
    write_manifest(dir.path(), "sha256", |t| {
        t.replace("task-types = [\"sha256\"]", "task-types = [\"echo\"]")
    });
    let folder = PluginFolder::open(runtime(HostPolicy::default()), dir.path())
        .await
        .unwrap();
    assert_eq!(folder.executor_for("echo").unwrap().manifest().name, "echo");
    assert!(
        error_of(&folder, "sha256")
            .unwrap()
            .contains("already served by plugin \"echo\"")
    );
}

#[tokio::test]
async fn precompiled_components_are_cached_on_disk() {
    let cache = tempdir();
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(config()).unwrap();
    executor(&rt, examples_dir(), "echo");
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(entries.len(), 1, "one cache entry per component");
    assert!(entries[0].file_name().to_string_lossy().ends_with(".cwasm"));

    // A second host (new engine, same configuration) maps the cached artifact and runs it.
    {
        let rt2 = Runtime::new(config()).unwrap();
        let plugin = executor(&rt2, examples_dir(), "echo");
        let out = plugin
            .run(
                &rt2,
                &task("echo", json!("cached")),
                &TaskServices::in_memory(),
            )
            .await;
        assert_eq!(json(&out.result.unwrap()), json!("cached"));
    }

    // A corrupt entry is discarded and rebuilt, never fatal. (Replaced by rename, as any
    // writer must: truncating a file that a running host has mapped would fault it.)
    let garbage = cache.path().join("garbage.tmp");
    std::fs::write(&garbage, b"garbage").unwrap();
    std::fs::rename(&garbage, entries[0].path()).unwrap();
    let rt3 = Runtime::new(config()).unwrap();
    let plugin = executor(&rt3, examples_dir(), "echo");
    assert!(
        plugin
            .run(&rt3, &task("echo", json!(2)), &TaskServices::in_memory())
            .await
            .result
            .is_ok()
    );
}
