//! Fuzzing the API's request parsing (a few seconds, run with the other tests): arbitrary
//! methods, paths, query strings and bodies — raw bytes, arbitrary JSON, and valid tasks with
//! one field replaced by arbitrary JSON — sent through the router of a real host. The router
//! never panics, answers client garbage with a status below 500 (503 only if the store were
//! down), and every error is `{"error": {"code", "message"}}`.

mod support;

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sentinel::config::{Overrides, Settings};
use serde_json::{Value, json};
use support::plugins_dir;
use tower::ServiceExt;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("tasks".to_string()),
                    Just("priority".to_string()),
                    ".{0,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid task with one field set to an arbitrary value (or an arbitrary extra field).
fn mutated_task() -> impl Strategy<Value = Value> {
    let fields = prop_oneof![
        Just("type"),
        Just("id"),
        Just("payload"),
        Just("priority"),
        Just("timeout_ms"),
        Just("max_retries"),
        Just("metadata"),
        Just("depends_on"),
        Just("affinity"),
        Just("unknown"),
    ];
    (fields, json_value(), any::<bool>()).prop_map(|(field, value, batch)| {
        let mut task = json!({"type": "echo", "payload": 1});
        task[field] = value;
        if batch {
            json!({"tasks": [{"type": "echo"}, task]})
        } else {
            task
        }
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        mutated_task().prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just("/v1/tasks"),
        Just("/v1/tasks/"),
        Just("/v1/dlq"),
        Just("/v1/dlq/"),
        Just("/v1/workers"),
        Just("/v1/locks"),
        Just("/v1/memory/"),
        Just("/v1/cluster/"),
        Just("/health"),
        Just("/"),
    ];
    let suffix = prop_oneof![
        Just(String::new()),
        "[a-z0-9%/._-]{0,16}",
        Just("x/cancel".to_string()),
        Just("x/retry".to_string()),
        Just("ns/key".to_string()),
        Just("%FF/%C3%28".to_string()),
        Just("select-worker".to_string()),
        Just("strategy".to_string()),
        Just("rebalance".to_string()),
    ];
    let query = prop_oneof![
        Just(String::new()),
        "[a-z_=&%0-9+-]{0,24}".prop_map(|q| format!("?{q}")),
        prop_oneof![
            Just("limit"),
            Just("cursor"),
            Just("order"),
            Just("status"),
            Just("ttl_ms"),
            Just("expected_version"),
            Just("dry_run"),
            Just("has_capacity"),
            Just("prefix"),
        ]
        .prop_flat_map(|k| ".{0,12}".prop_map(move |v| {
            let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
            format!("?{k}={v}")
        })),
    ];
    (prefix, suffix, query).prop_map(|(p, s, q)| format!("{p}{s}{q}"))
}

#[test]
fn client_garbage_never_panics_and_always_answers_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = rt.block_on(async {
        let o = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            plugins: Some(plugins_dir().to_path_buf()),
            worker_id: Some("fuzz-host".into()),
            // No worker slots would still claim; keep the host quiet: tasks stay pending.
            task_types: Some(vec!["none-served-here".into()]),
            ..Default::default()
        };
        let settings = Settings::resolve(o, || unreachable!()).unwrap();
        sentinel::node::Node::start(settings).await.unwrap()
    });
    let app = sentinel::api::router(node.state.clone());
    let methods = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH")
    ];
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(methods, path(), body()), |(method, path, body)| {
            let Ok(req) = Request::builder()
                .method(method)
                .uri(&path)
                .body(Body::from(body))
            else {
                return Ok(()); // not even a request: nothing reaches the router
            };
            let (status, bytes, content_type) = rt.block_on(async {
                let resp = app.clone().oneshot(req).await.unwrap();
                let status = resp.status().as_u16();
                let ct = resp
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap_or("").to_string())
                    .unwrap_or_default();
                let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
                    .await
                    .unwrap();
                (status, bytes, ct)
            });
            prop_assert!(
                status < 500 || status == 503,
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
            if path.starts_with("/metrics") && status == 200 {
                return Ok(());
            }
            prop_assert!(
                content_type.starts_with("application/json"),
                "{method} {path}: {content_type}"
            );
            let answer: Value = serde_json::from_slice(&bytes).expect("a JSON body");
            if status >= 400 && !(status == 503 && path.starts_with("/health")) {
                prop_assert!(
                    answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
                    "{method} {path}: {status} {answer}"
                );
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(node.shutdown(std::time::Duration::from_secs(5)));
}
