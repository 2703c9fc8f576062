//! Signed plugins, as an operator uses them and an attacker tries them: keys and signatures made
//! with the `sentinel plugins` commands; a host that requires signatures loads only what a
//! trusted key signed; a plugin tampered with after signing, or whose manifest was widened to ask
//! for more, is rejected while the version already loaded keeps serving; a tenant that names its
//! own keys runs only plugins they signed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sentinel::client::{ApiFailure, Client};
use sentinel::config::{Overrides, Settings};
use sentinel::node::Node;
use sentinel::tenancy::tokens::{digest_hex, new_token};
use serde_json::{Value, json};
use support::*;

fn sentinel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(args)
        .output()
        .expect("running sentinel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sentinel plugins keygen`: the key file and the public key it printed.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let (code, out, err) = sentinel(&[
        "--output",
        "json",
        "plugins",
        "keygen",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let public = v["public_key"].as_str().unwrap().to_string();
    assert!(public.starts_with("ed25519:"), "{out}");
    assert_eq!(v["config"]["trust"]["trustedKeys"][0], public.as_str());
    (key, public)
}

fn sign(key: &Path, wasm: &Path) {
    let (code, _, err) = sentinel(&[
        "plugins",
        "sign",
        "--key",
        key.to_str().unwrap(),
        wasm.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
}

async fn start(dir: &Path, folder: &Path, trust: Value, tenants: Value) -> (Node, Client, Client) {
    let (admin, tenant) = (new_token(), new_token());
    let config = json!({
        "auth": {"tokens": [
            {"tenant": "ops", "role": "admin", "sha256": digest_hex(&admin)},
            {"tenant": "acme", "sha256": digest_hex(&tenant)},
        ]},
        "tenants": tenants,
        "trust": trust,
    });
    let path = dir.join("sentinel.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let o = Overrides {
        config_file: Some(path),
        data_dir: Some(dir.join("data")),
        listen: Some("127.0.0.1:0".into()),
        plugins: Some(folder.to_path_buf()),
        worker_id: Some("trust-host".into()),
        ..Default::default()
    };
    let node = Node::start(Settings::resolve(o, || unreachable!()).unwrap())
        .await
        .unwrap();
    let url = format!("http://{}", node.local_addr);
    let admin = Client::new(&url, Some(&admin), None).unwrap();
    let tenant = Client::new(&url, Some(&tenant), None).unwrap();
    (node, admin, tenant)
}

/// The admin's view of one plugin.
async fn plugin(admin: &Client, name: &str) -> Value {
    let all = admin.get("/v1/plugins").await.unwrap();
    all["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until the plugin's entry reports a rejection, and returns it.
async fn rejection(admin: &Client, name: &str) -> String {
    until(
        Duration::from_secs(20),
        "the plugin to be rejected",
        async || {
            plugin(admin, name).await["error"]
                .as_str()
                .map(str::to_string)
        },
    )
    .await
}

/// Submits an echo task and waits for its output.
async fn echo_runs(c: &Client, payload: Value) -> Value {
    let r = c
        .post("/v1/tasks", &json!({"type": "echo", "payload": payload}))
        .await
        .unwrap();
    let task = wait_settled(c, r["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(task["status"], "completed", "{task}");
    task["output"].clone()
}

#[test]
fn keygen_sign_and_verify_round_trip_and_catch_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let folder = plugin_folder(dir.path(), &[], &["echo", "sha256"]);
    let (key, public) = keygen(dir.path(), "k");
    let (_, other) = keygen(dir.path(), "other");
    let wasm = folder.join("echo.wasm");
    sign(&key, &wasm);
    let pub_file = format!("{}.pub", key.display());
    let w = wasm.to_str().unwrap();
    assert_eq!(
        sentinel(&["plugins", "verify", "--pubkey", &public, w]).0,
        0
    );
    assert_eq!(
        sentinel(&["plugins", "verify", "--pubkey", &pub_file, w]).0,
        0
    );
    let (code, _, err) = sentinel(&["plugins", "verify", "--pubkey", &other, w]);
    assert_eq!(code, 1);
    assert!(err.contains("not by"), "{err}");

    // A key file is never overwritten, and is private to its owner.
    let (code, _, err) = sentinel(&["plugins", "keygen", "--out", key.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by others: {mode:o}"
        );
    }

    std::fs::copy(folder.join("sha256.wasm"), &wasm).unwrap();
    let (code, _, err) = sentinel(&["plugins", "verify", "--pubkey", &public, w]);
    assert_eq!(code, 1);
    assert!(err.contains("changed after signing"), "{err}");
    std::fs::remove_file(folder.join("echo.sig")).unwrap();
    let (code, _, err) = sentinel(&["plugins", "verify", "--pubkey", &public, w]);
    assert_eq!(code, 1);
    assert!(err.contains("unsigned"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_requires_signatures_runs_only_what_a_trusted_key_signed() {
    let dir = tempfile::tempdir().unwrap();
    let folder = plugin_folder(dir.path(), &[], &["echo", "sha256", "word-count"]);
    let (key, public) = keygen(dir.path(), "ops.key");
    let (stranger, _) = keygen(dir.path(), "stranger.key");
    sign(&key, &folder.join("echo.wasm"));
    sign(&stranger, &folder.join("word-count.wasm"));
    let trust = json!({"requireSignature": true, "trustedKeys": [public]});
    let (_node, admin, tenant) = start(dir.path(), &folder, trust, json!({})).await;

    let echo = plugin(&admin, "echo").await;
    assert_eq!(echo["signed_by"], public.as_str(), "{echo}");
    assert!(echo["error"].is_null(), "{echo}");
    let unsigned = plugin(&admin, "sha256").await;
    assert!(unsigned["kind"].is_null(), "{unsigned}");
    assert!(
        unsigned["error"].as_str().unwrap().contains("unsigned"),
        "{unsigned}"
    );
    let foreign = plugin(&admin, "word-count").await;
    assert!(foreign["kind"].is_null(), "{foreign}");
    assert!(
        foreign["error"]
            .as_str()
            .unwrap()
            .contains("does not trust"),
        "{foreign}"
    );
    assert_eq!(echo_runs(&tenant, json!({"n": 1})).await, json!({"n": 1}));
    let refused = tenant
        .post(
            "/v1/tasks",
            &json!({"type": "sha256", "payload": {"text": "x"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.downcast_ref::<ApiFailure>().unwrap().status, 422);

    // The component swapped after signing: rejected, and the signed version keeps serving.
    std::fs::copy(folder.join("sha256.wasm"), folder.join("echo.wasm")).unwrap();
    let why = rejection(&admin, "echo").await;
    assert!(why.contains("changed after signing"), "{why}");
    assert_eq!(
        echo_runs(&tenant, json!("still the old echo")).await,
        json!("still the old echo")
    );

    // Restore the component, then widen the manifest to ask for more: rejected too.
    std::fs::copy(plugins_dir().join("echo.wasm"), folder.join("echo.wasm")).unwrap();
    until(
        Duration::from_secs(20),
        "the restored plugin to load",
        async || {
            plugin(&admin, "echo").await["error"]
                .is_null()
                .then_some(())
        },
    )
    .await;
    let manifest = std::fs::read_to_string(folder.join("echo.toml")).unwrap();
    let widened = manifest.replace("memory-mb = 32", "memory-mb = 512");
    assert_ne!(manifest, widened);
    std::fs::write(folder.join("echo.toml"), widened).unwrap();
    let why = rejection(&admin, "echo").await;
    assert!(why.contains("changed after signing"), "{why}");
    assert_eq!(echo_runs(&tenant, json!(2)).await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_its_own_keys_runs_only_plugins_they_signed() {
    let dir = tempfile::tempdir().unwrap();
    let folder = plugin_folder(dir.path(), &[], &["echo", "sha256"]);
    let (acme_key, acme_public) = keygen(dir.path(), "acme.key");
    let (ops_key, _) = keygen(dir.path(), "ops.key");
    sign(&acme_key, &folder.join("sha256.wasm"));
    sign(&ops_key, &folder.join("echo.wasm"));
    // Signatures are not required: every plugin loads, but acme trusts only its own key.
    let tenants = json!({"acme": {"trustedKeys": [acme_public]}});
    let (_node, admin, acme) = start(dir.path(), &folder, json!({}), tenants).await;
    assert!(plugin(&admin, "echo").await["error"].is_null());

    let seen = acme.get("/v1/plugins").await.unwrap();
    let names: Vec<&str> = seen["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sha256"], "{seen}");
    let refused = acme
        .post("/v1/tasks", &json!({"type": "echo", "payload": 1}))
        .await
        .unwrap_err();
    assert_eq!(refused.downcast_ref::<ApiFailure>().unwrap().status, 422);
    let r = acme
        .post(
            "/v1/tasks",
            &json!({"type": "sha256", "payload": {"data": "abc"}}),
        )
        .await
        .unwrap();
    let task = wait_settled(&acme, r["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(task["status"], "completed", "{task}");
}

#[test]
fn requiring_signatures_without_any_trusted_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.json");
    std::fs::write(
        &path,
        json!({"trust": {"requireSignature": true}}).to_string(),
    )
    .unwrap();
    let o = Overrides {
        config_file: Some(path.clone()),
        data_dir: Some(dir.path().join("data")),
        ..Default::default()
    };
    let err = Settings::resolve(o, || unreachable!()).unwrap_err();
    assert!(format!("{err:#}").contains("trust.trustedKeys"), "{err:#}");

    let bad = json!({"trust": {"trustedKeys": ["ed25519:AAAA"]}});
    std::fs::write(&path, bad.to_string()).unwrap();
    let o = Overrides {
        config_file: Some(path),
        data_dir: Some(dir.path().join("data")),
        ..Default::default()
    };
    let err = Settings::resolve(o, || unreachable!()).unwrap_err();
    assert!(
        format!("{err:#}").contains("trust.trustedKeys[0]"),
        "{err:#}"
    );
}
