//! End-to-end trust on PostgreSQL with real `sentinel worker` processes: two workers hold the
//! fleet secret, a third (the intruder) shares the store without it. The intruder's record is
//! ignored by the fleet, it claims and settles nothing, every task completes on the fleet; and
//! after the whole run no log line, metric, task record or error message contains the fleet
//! secret or an API token.
//!
//! Needs `SENTINEL_TEST_POSTGRES_URL` (`.ci/run` sets it).

mod support;

use std::path::Path;
use std::time::Duration;

use sentinel::client::Client;
use serde_json::json;
use support::*;

const TASKS: usize = 300;
const FLEET_SECRET: &str = "fleet-secret-e2e-0123456789abcdefghijklmnopqrstuvwxyz";

fn digest_hex(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn config(dir: &Path, admin: &str, tenant: &str) -> String {
    let path = dir.join("sentinel.json");
    let config = json!({
        "auth": {"tokens": [
            {"tenant": "ops", "role": "admin", "sha256": digest_hex(admin)},
            {"tenant": "acme", "sha256": digest_hex(tenant)},
        ]},
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_fleet_secret_takes_no_part_and_no_secret_is_ever_written() {
    // Owns the schema: dropped (with all the test's data) at the end.
    let (_owner, store) = fresh_postgres_store();
    let dir = tempfile::tempdir().unwrap();
    let admin_token = format!("adm-{}", uuid::Uuid::new_v4().simple());
    let tenant_token = format!("ten-{}", uuid::Uuid::new_v4().simple());
    let config = config(dir.path(), &admin_token, &tenant_token);
    let args = ["--config", config.as_str()];
    let keyed = Extra {
        args: &args,
        env: &[("SENTINEL_FLEET_SECRET", FLEET_SECRET)],
        // The most talkative level an operator would use, so the grep below means something.
        log: Some("debug"),
    };
    let w1 = spawn_worker_with("trusted-1", &store, dir.path(), 8, &keyed);
    let w2 = spawn_worker_with("trusted-2", &store, dir.path(), 8, &keyed);
    let intruder = spawn_worker_with(
        "intruder",
        &store,
        dir.path(),
        8,
        &Extra {
            args: &args,
            log: Some("debug"),
            ..Extra::default()
        },
    );
    let url = w1.addr.clone();
    let admin = Client::new(&url, Some(&admin_token), None).unwrap();
    let acme = Client::new(&url, Some(&tenant_token), None).unwrap();
    let via_intruder = Client::new(&intruder.addr, Some(&admin_token), Some("acme")).unwrap();

    let tasks: Vec<_> = (0..TASKS)
        .map(|i| json!({"type": "echo", "payload": i}))
        .collect();
    for chunk in tasks.chunks(100) {
        acme.post("/v1/tasks", &json!({ "tasks": chunk }))
            .await
            .unwrap();
    }
    // Submitted through the intruder too: it may accept work for the fleet, never run it.
    via_intruder
        .post(
            "/v1/tasks",
            &json!({"tasks": [{"type": "echo", "payload": "via intruder"}]}),
        )
        .await
        .unwrap();
    until(
        Duration::from_secs(120),
        "every task to complete",
        async || {
            let page = acme
                .get("/v1/tasks?status=completed&limit=1000")
                .await
                .ok()?;
            (page["tasks"].as_array()?.len() == TASKS + 1).then_some(())
        },
    )
    .await;

    let done = acme.get("/v1/tasks?limit=1000").await.unwrap();
    let ran_on: std::collections::BTreeSet<_> = done["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["worker_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        ran_on.iter().all(|w| w.starts_with("trusted-")),
        "only the fleet runs tasks: {ran_on:?}"
    );
    // The fleet does not see the intruder at all.
    let workers = admin.get("/v1/workers").await.unwrap();
    let ids: Vec<_> = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker_id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"trusted-1".to_string()), "{ids:?}");
    assert!(!ids.contains(&"intruder".to_string()), "{ids:?}");
    let metrics = admin.get_text("/metrics").await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sentinel_unsealed_records_total") && !l.ends_with(" 0")),
        "the ignored record is counted"
    );
    let intruder_log = std::fs::read_to_string(&intruder.log).unwrap();
    assert!(intruder_log.contains("NO FLEET SECRET"), "warned at start");
    assert!(
        intruder_log.contains("refusing to claim, renew or settle tasks"),
        "says why it does nothing"
    );

    // A wrong token is refused without being echoed.
    let wrong = format!("{tenant_token}x");
    let err = Client::new(&url, Some(&wrong), None)
        .unwrap()
        .get("/v1/tasks")
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains(&wrong), "{err}");

    // Secrets at rest: everything the run wrote that a reader could see.
    let mut seen = String::new();
    for text in [metrics, done.to_string(), workers.to_string(), err] {
        seen.push_str(&text);
    }
    for host in [&w1, &w2, &intruder] {
        seen.push_str(&std::fs::read_to_string(&host.log).unwrap());
    }
    seen.push_str(&admin.get("/v1/locks").await.unwrap().to_string());
    assert!(seen.len() > 10_000, "the logs are not empty");
    for (name, secret) in [
        ("fleet secret", FLEET_SECRET),
        ("admin token", admin_token.as_str()),
        ("tenant token", tenant_token.as_str()),
    ] {
        assert!(!seen.contains(secret), "the {name} was written out");
    }
    drop((w1, w2, intruder));
}
