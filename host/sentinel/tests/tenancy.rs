//! Tenancy at the host's edge, as an attacker tries it: tenant B reaches for tenant A's task,
//! result, dead letter, memory and locks (all 404, never 403: existence does not leak); a
//! tenant calls every admin endpoint (403); no token or a bad one (401); a token kept in clear
//! is refused at start; a plugin granted more than its tenant's ceiling is capped; every
//! refusal is audited.

mod support;

use std::path::Path;
use std::time::Duration;

use sentinel::client::{ApiFailure, Client};
use sentinel::config::{Overrides, Settings};
use sentinel::node::Node;
use sentinel::tenancy::tokens::{digest_hex, new_token};
use serde_json::{Value, json};
use support::*;

/// The tokens of one test host.
struct Tokens {
    a: String,
    b: String,
    admin: String,
}

/// A host with tenants `a` and `b` and an admin; `tenants` is the `tenants` section.
async fn start(dir: &Path, tenants: Value) -> (Node, Tokens) {
    let tokens = Tokens {
        a: new_token(),
        b: new_token(),
        admin: new_token(),
    };
    let config = json!({
        "auth": {"tokens": [
            {"name": "a-ci", "tenant": "a", "sha256": digest_hex(&tokens.a)},
            {"name": "b-ci", "tenant": "b", "role": "tenant", "sha256": digest_hex(&tokens.b)},
            {"name": "ops", "tenant": "ops", "role": "admin", "sha256": digest_hex(&tokens.admin)},
        ]},
        "tenants": tenants,
        "sandbox": {"allowScratch": true, "allowMemory": true},
    });
    let path = dir.join("sentinel.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let o = Overrides {
        config_file: Some(path),
        data_dir: Some(dir.join("data")),
        listen: Some("127.0.0.1:0".into()),
        plugins: Some(plugin_folder(dir, &["hostile"], &["echo", "sha256"])),
        worker_id: Some("tenancy-host".into()),
        heartbeat_interval_ms: Some(500),
        ..Default::default()
    };
    let node = Node::start(Settings::resolve(o, || unreachable!()).unwrap())
        .await
        .unwrap();
    (node, tokens)
}

fn client(node: &Node, token: Option<&str>) -> Client {
    Client::new(&format!("http://{}", node.local_addr), token, None).unwrap()
}

fn admin_on(node: &Node, token: &str, tenant: &str) -> Client {
    Client::new(
        &format!("http://{}", node.local_addr),
        Some(token),
        Some(tenant),
    )
    .unwrap()
}

/// The status of a failed call (panics if it succeeded).
fn status(r: anyhow::Result<Value>) -> u16 {
    match r {
        Ok(v) => panic!("expected a refusal, got {v}"),
        Err(e) => {
            e.downcast_ref::<ApiFailure>()
                .unwrap_or_else(|| panic!("not an API failure: {e:#}"))
                .status
        }
    }
}

async fn submit(c: &Client, body: Value) -> String {
    c.post("/v1/tasks", &body).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_b_reaches_for_everything_of_tenant_a_and_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node, t) = start(dir.path(), json!({})).await;
    let (a, b) = (client(&node, Some(&t.a)), client(&node, Some(&t.b)));

    let done = submit(&a, json!({"type": "echo", "payload": "a's secret"})).await;
    assert_eq!(
        wait_settled(&a, &done, Duration::from_secs(30)).await["status"],
        "completed"
    );
    let dead = submit(
        &a,
        json!({"type": "hostile", "payload": {"attack": "panic"}, "max_retries": 0}),
    )
    .await;
    assert_eq!(
        wait_settled(&a, &dead, Duration::from_secs(30)).await["status"],
        "dead"
    );
    a.put("/v1/memory/notes/secret", &json!({"value": "a's value"}))
        .await
        .unwrap();
    node.state
        .store
        .acquire_lock(&sentinel_coord::model::LockRequest {
            tenant: "a".into(),
            key: "a-lock".into(),
            owner: "a-owner".into(),
            ttl_ms: 60_000,
            metadata: json!({}),
            holder_secret: None,
        })
        .await
        .unwrap()
        .expect("lock granted");

    // By id: 404, exactly as for an id that does not exist.
    assert_eq!(status(b.get(&format!("/v1/tasks/{done}")).await), 404);
    assert_eq!(status(b.get(&format!("/v1/tasks/{dead}")).await), 404);
    assert_eq!(
        status(
            b.post(&format!("/v1/tasks/{done}/cancel"), &json!({}))
                .await
        ),
        404
    );
    assert_eq!(
        status(b.post(&format!("/v1/dlq/{dead}/retry"), &json!({})).await),
        404
    );
    assert_eq!(status(b.get("/v1/memory/notes/secret").await), 404);
    assert_eq!(status(b.delete("/v1/memory/notes/secret").await), 404);
    // In listings: nothing.
    for path in ["/v1/tasks", "/v1/dlq"] {
        let page = b.get(path).await.unwrap();
        assert_eq!(page["tasks"], json!([]), "{path}: {page}");
    }
    assert_eq!(
        b.get("/v1/memory/notes").await.unwrap()["entries"],
        json!([])
    );
    assert_eq!(b.get("/v1/locks").await.unwrap()["locks"], json!([]));
    // A still has all of it.
    assert_eq!(
        a.get(&format!("/v1/tasks/{done}")).await.unwrap()["tenant"],
        "a"
    );
    assert_eq!(
        a.get("/v1/memory/notes/secret").await.unwrap()["value"],
        json!({"value": "a's value"})
    );
    assert_eq!(
        a.get("/v1/locks").await.unwrap()["locks"][0]["key"],
        "a-lock"
    );
    // Naming another tenant does not help a tenant token.
    let sneaky = admin_on(&node, &t.b, "a");
    assert_eq!(status(sneaky.get(&format!("/v1/tasks/{done}")).await), 403);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_calling_any_admin_endpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (node, t) = start(dir.path(), json!({})).await;
    let a = client(&node, Some(&t.a));
    for (method, path, body) in [
        ("GET", "/v1/workers", None),
        ("GET", "/v1/workers/tenancy-host", None),
        ("GET", "/v1/cluster/load", None),
        ("GET", "/cluster/health", None),
        ("GET", "/metrics", None),
        ("POST", "/v1/cluster/rebalance", None),
        (
            "POST",
            "/v1/cluster/select-worker",
            Some(json!({"type": "echo"})),
        ),
        (
            "PUT",
            "/v1/cluster/strategy",
            Some(json!({"strategy": "random"})),
        ),
    ] {
        let r = a.call(method.parse().unwrap(), path, body.as_ref()).await;
        assert_eq!(status(r), 403, "{method} {path}");
    }
    // The strategy did not change.
    let admin = client(&node, Some(&t.admin));
    assert_eq!(
        admin.get("/v1/cluster/load").await.unwrap()["strategy"],
        "least_loaded"
    );
    admin
        .put("/v1/cluster/strategy", &json!({"strategy": "random"}))
        .await
        .unwrap();
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_a_bad_one_is_refused_everywhere_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let (node, t) = start(dir.path(), json!({})).await;
    let forged = format!("{}x", t.a);
    for token in [None, Some("not-a-token"), Some(forged.as_str()), Some("")] {
        let c = client(&node, token);
        for path in [
            "/v1/tasks",
            "/v1/dlq",
            "/v1/locks",
            "/v1/plugins",
            "/v1/memory/notes",
            "/v1/workers",
            "/metrics",
        ] {
            assert_eq!(status(c.get(path).await), 401, "{token:?} {path}");
        }
        assert_eq!(
            status(c.post("/v1/tasks", &json!({"type": "echo"})).await),
            401
        );
        assert_eq!(c.get("/health").await.unwrap()["status"], "healthy");
    }
    // The scheme is case-insensitive; the token is not.
    let raw = reqwest::Client::new();
    let url = format!("http://{}/v1/tasks", node.local_addr);
    let ok = raw
        .get(&url)
        .header("authorization", format!("bearer {}", t.a))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Nothing was stored by the refused submissions.
    let admin = client(&node, Some(&t.admin));
    assert_eq!(admin.get("/v1/tasks").await.unwrap()["tasks"], json!([]));
    // Every refusal is audited, by reason.
    let metrics = admin.get_text("/metrics").await.unwrap();
    let count = |reason: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("sentinel_audit_events_total")
                    && l.contains("kind=\"refused\"")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(count("missing_token"), 8, "{metrics}");
    assert_eq!(count("bad_token"), 24, "{metrics}");
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_acts_on_any_tenant_by_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (node, t) = start(dir.path(), json!({})).await;
    let a = client(&node, Some(&t.a));
    let id = submit(&a, json!({"type": "echo", "payload": 1})).await;
    wait_settled(&a, &id, Duration::from_secs(30)).await;

    let admin = client(&node, Some(&t.admin));
    let me = admin.get("/v1/whoami").await.unwrap();
    assert_eq!(
        (me["role"].as_str(), me["all_tenants"].as_bool()),
        (Some("admin"), Some(true))
    );
    // Naming no tenant: listings span tenants; by id, its home tenant.
    let all = admin.get("/v1/tasks").await.unwrap();
    assert_eq!(all["tasks"][0]["tenant"], "a", "{all}");
    assert_eq!(status(admin.get(&format!("/v1/tasks/{id}")).await), 404);
    // Naming tenant a: a's task, and what it submits lands in a.
    let on_a = admin_on(&node, &t.admin, "a");
    assert_eq!(
        on_a.get(&format!("/v1/tasks/{id}")).await.unwrap()["tenant"],
        "a"
    );
    let placed = submit(&on_a, json!({"type": "echo", "payload": 2})).await;
    assert_eq!(
        a.get(&format!("/v1/tasks/{placed}")).await.unwrap()["tenant"],
        "a"
    );
    let me = a.get("/v1/whoami").await.unwrap();
    assert_eq!(
        (me["role"].as_str(), me["tenant"].as_str()),
        (Some("tenant"), Some("a"))
    );
    // A malformed tenant name is a 400 naming the header.
    let bad = admin_on(&node, &t.admin, "a/../b");
    let err = bad.get("/v1/tasks").await.unwrap_err();
    let failure = err.downcast_ref::<ApiFailure>().unwrap();
    assert_eq!(failure.status, 400);
    assert!(failure.message.contains("X-Sentinel-Tenant"), "{failure:?}");
    // The host's own tenant (cancellation notices) is out of reach, even for an admin.
    let system = admin_on(&node, &t.admin, sentinel_coord::model::SYSTEM_TENANT);
    let err = system.get("/v1/memory/cancels").await.unwrap_err();
    assert_eq!(err.downcast_ref::<ApiFailure>().unwrap().status, 400);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_and_submits_only_its_task_types() {
    let dir = tempfile::tempdir().unwrap();
    let (node, t) = start(dir.path(), json!({"a": {"taskTypes": ["echo"]}})).await;
    let (a, b) = (client(&node, Some(&t.a)), client(&node, Some(&t.b)));
    let plugins = a.get("/v1/plugins").await.unwrap();
    let types: Vec<&str> = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["task_types"].as_array().unwrap())
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types, ["echo"], "{plugins}");
    assert!(
        plugins.get("dir").is_none(),
        "the host's folder is the operator's business"
    );
    let err = a
        .post(
            "/v1/tasks",
            &json!({"type": "sha256", "payload": {"data": "x"}}),
        )
        .await
        .unwrap_err();
    let failure = err.downcast_ref::<ApiFailure>().unwrap();
    assert_eq!(
        (failure.status, failure.code.as_str()),
        (422, "UNKNOWN_TASK_TYPE")
    );
    assert!(
        failure.message.ends_with("known types: echo"),
        "{failure:?}"
    );
    // Another tenant is not restricted.
    let id = submit(&b, json!({"type": "sha256", "payload": {"data": "x"}})).await;
    assert_eq!(
        wait_settled(&b, &id, Duration::from_secs(30)).await["status"],
        "completed"
    );
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_granted_more_than_its_tenants_ceiling_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    // The hostile manifest asks for 32 MiB, scratch and shared memory; the host allows all.
    let (node, t) = start(
        dir.path(),
        json!({"a": {"sandbox": {"memoryMb": 16, "memory": false, "scratch": false}}}),
    )
    .await;
    let (a, b) = (client(&node, Some(&t.a)), client(&node, Some(&t.b)));
    let run = async |c: &Client, attack: Value| {
        let id = submit(
            c,
            json!({"type": "hostile", "payload": attack, "max_retries": 0}),
        )
        .await;
        wait_settled(c, &id, Duration::from_secs(60)).await
    };
    let bomb = run(&a, json!({"attack": "memory-bomb"})).await;
    assert!(
        bomb["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&(16u64 << 20).to_string()),
        "{bomb}"
    );
    let kv = run(&a, json!({"attack": "kv"})).await;
    assert_eq!(kv["status"], "dead", "{kv}");
    let scratch = run(&a, json!({"attack": "scratch-write"})).await;
    assert_eq!(scratch["status"], "dead", "{scratch}");
    // Tenant b has no ceiling: the same plugin gets its manifest's grant.
    let bomb = run(&b, json!({"attack": "memory-bomb"})).await;
    assert!(
        bomb["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&(32u64 << 20).to_string()),
        "{bomb}"
    );
    assert_eq!(
        run(&b, json!({"attack": "kv"})).await["status"],
        "completed"
    );
    assert_eq!(
        run(&b, json!({"attack": "scratch-write"})).await["status"],
        "completed"
    );
    node.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn a_token_kept_in_clear_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.json");
    for config in [
        json!({"tenants": {"0123456789abcdef-token": "acme"}}),
        json!({"auth": {"tokens": [{"tenant": "acme", "token": new_token()}]}}),
        json!({"auth": {"tokens": [{"tenant": "acme", "sha256": new_token()}]}}),
    ] {
        std::fs::write(&path, config.to_string()).unwrap();
        let err = Settings::resolve(
            Overrides {
                config_file: Some(path.clone()),
                ..Default::default()
            },
            || unreachable!(),
        )
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("sentinel tokens new"), "{config}: {err}");
    }
}

#[test]
fn a_public_host_without_tokens_refuses_to_start() {
    let err = Settings::resolve(
        Overrides {
            listen: Some("0.0.0.0:0".into()),
            ..Default::default()
        },
        || unreachable!(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--insecure-no-auth") && err.contains("sentinel tokens new"),
        "{err}"
    );
}

#[test]
fn tokens_new_prints_a_token_once_and_a_mergeable_fragment() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args([
            "tokens", "new", "--tenant", "acme", "--admin", "--output", "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = v["token"].as_str().unwrap();
    let entry = &v["config"]["auth"]["tokens"][0];
    assert_eq!(entry["sha256"], digest_hex(token));
    assert_eq!(
        (entry["tenant"].as_str(), entry["role"].as_str()),
        (Some("acme"), Some("admin"))
    );
    assert!(
        !v["config"].to_string().contains(token),
        "the fragment never holds the token"
    );
}
