//! HTTP hygiene: hostile or careless clients never hurt anyone. Slow clients are cut off after
//! the configured timeouts, a connection flood is refused, and every refusal — the framework's
//! own included — is `{"error": {"code", "message"}}` with the right status.

mod support;

use std::time::{Duration, Instant};

use axum::routing::get;
use sentinel::client::Client;
use sentinel::config::{Overrides, Settings};
use sentinel::node::Node;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

async fn start(dir: &std::path::Path, edit: impl FnOnce(&mut Settings)) -> (Node, Client) {
    let o = Overrides {
        data_dir: Some(dir.to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        plugins: Some(plugins_dir().to_path_buf()),
        worker_id: Some("hygiene-host".into()),
        heartbeat_interval_ms: Some(500),
        ..Default::default()
    };
    let mut settings = Settings::resolve(o, || unreachable!()).unwrap();
    edit(&mut settings);
    let node = Node::start(settings).await.unwrap();
    let client = Client::new(&format!("http://{}", node.local_addr), None, None).unwrap();
    (node, client)
}

/// Sends `method path` with `headers` and `body`; the status and the body as JSON (`Null` when
/// it is not JSON).
async fn send(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("http://{}{path}", node.local_addr),
        )
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The documented error shape with this code.
fn assert_error(answer: &Value, code: &str) {
    assert_eq!(answer["error"]["code"], code, "{answer}");
    assert!(
        !answer["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{answer}"
    );
}

/// Reads until the server closes the connection; everything it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_framework_is_json_with_the_right_status() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _c) = start(dir.path(), |s| {
        s.http.max_body_bytes = 64 << 10;
        s.max_payload_bytes = 32 << 10;
    })
    .await;
    let none: &[(String, String)] = &[];
    let long = "a".repeat(9000);
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        ("GET", "/nowhere".into(), "", 404, "NOT_FOUND"),
        ("DELETE", "/v1/tasks".into(), "", 405, "METHOD_NOT_ALLOWED"),
        ("PATCH", "/health".into(), "", 405, "METHOD_NOT_ALLOWED"),
        (
            "GET",
            "/v1/tasks?limit=ten".into(),
            "",
            400,
            "INVALID_QUERY",
        ),
        (
            "GET",
            "/v1/tasks?colour=red".into(),
            "",
            400,
            "INVALID_QUERY",
        ),
        ("GET", "/v1/tasks?limit=0".into(), "", 400, "OUT_OF_RANGE"),
        (
            "GET",
            "/v1/workers?has_capacity=maybe".into(),
            "",
            400,
            "INVALID_QUERY",
        ),
        ("GET", "/v1/tasks/%FF%FE".into(), "", 400, "INVALID_PATH"),
        (
            "GET",
            "/v1/memory/ns/%C3%28".into(),
            "",
            400,
            "INVALID_PATH",
        ),
        ("GET", format!("/v1/tasks/{long}"), "", 414, "URI_TOO_LONG"),
        ("POST", "/v1/tasks".into(), "{", 400, "MALFORMED_JSON"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = send(&node, method, &path, none, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_error(&answer, code);
    }
    // The query error names the parameter.
    let (_, answer) = send(&node, "GET", "/v1/tasks?limit=ten", none, "").await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{answer}"
    );

    // A body over the limit, declared or streamed: 413 in JSON.
    let big = format!(
        "{{\"type\": \"echo\", \"payload\": \"{}\"}}",
        "x".repeat(70 << 10)
    );
    let (got, answer) = send(&node, "POST", "/v1/tasks", none, &big).await;
    assert_eq!(got, 413, "{answer}");
    assert_error(&answer, "BODY_TOO_LARGE");

    // Headers: too many, or too large in total, answer 431 in JSON (not hyper's empty 431).
    let many: Vec<(String, String)> = (0..80).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let (got, answer) = send(&node, "GET", "/health", &many, "").await;
    assert_eq!(got, 431, "{answer}");
    assert_error(&answer, "HEADERS_TOO_LARGE");
    let huge = vec![("x-big".to_string(), "v".repeat(20 << 10))];
    let (got, answer) = send(&node, "GET", "/health", &huge, "").await;
    assert_eq!(got, 431, "{answer}");
    assert_error(&answer, "HEADERS_TOO_LARGE");

    // The host is unaffected.
    assert_eq!(send(&node, "GET", "/health", none, "").await.0, 200);
    node.shutdown(Duration::from_secs(5)).await;
}

async fn boom() -> &'static str {
    panic!("kaboom")
}

#[tokio::test]
async fn a_panicking_handler_answers_a_json_500_and_the_router_goes_on() {
    let http = sentinel::config::HttpSettings::defaults(1 << 20);
    let app = sentinel::api::harden(
        axum::Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" })),
        http,
    );
    let req = |path: &str| {
        axum::http::Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let resp = app.clone().oneshot(req("/boom")).await.unwrap();
    assert_eq!(resp.status(), 500);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_error(&answer, "INTERNAL");
    assert!(
        !answer.to_string().contains("kaboom"),
        "no internals leak: {answer}"
    );
    assert_eq!(app.oneshot(req("/fine")).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_headers_byte_by_byte_is_cut_off_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), |s| {
        s.http.header_timeout = Duration::from_secs(1)
    })
    .await;
    let mut slow = TcpStream::connect(node.local_addr).await.unwrap();
    let started = Instant::now();
    let request =
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_off = false;
    for b in request {
        if slow.write_all(&[*b]).await.is_err() {
            cut_off = true;
            break;
        }
        // Meanwhile everyone else is served promptly.
        let t = Instant::now();
        c.get("/health").await.unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "/health took {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !cut_off {
        // The server closed its side: reading sees the end (no answer to a half request).
        let answer = tokio::time::timeout(Duration::from_secs(3), read_to_close(&mut slow))
            .await
            .expect("the slow connection is closed by the server");
        assert!(!answer.contains("200 OK"), "{answer}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off after the header timeout, took {:?}",
        started.elapsed()
    );
    // An idle connection is closed after the same timeout.
    let mut idle = TcpStream::connect(node.local_addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), read_to_close(&mut idle))
        .await
        .expect("an idle connection is closed after the header timeout");
    assert_eq!(c.get("/health").await.unwrap()["status"], "healthy");
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), |s| s.http.body_timeout = Duration::from_secs(1)).await;
    let mut stalled = TcpStream::connect(node.local_addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\": ",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let health = c.get("/health").await.unwrap();
    assert_eq!(health["status"], "healthy", "others are served meanwhile");
    let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut stalled))
        .await
        .expect("the stalled request is answered and closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_error(&body, "REQUEST_TIMEOUT");
    // Nothing was stored.
    assert!(all_tasks(&c).await.is_empty());
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_a_json_503_until_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let (node, c) = start(dir.path(), |s| s.http.max_connections = 2).await;
    let hold1 = TcpStream::connect(node.local_addr).await.unwrap();
    let hold2 = TcpStream::connect(node.local_addr).await.unwrap();
    // Both slots are taken once the server has accepted them.
    let (status, answer) = until(Duration::from_secs(5), "the limit to bite", async || {
        let resp = reqwest::Client::new()
            .get(format!("http://{}/health", node.local_addr))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").is_some();
        let body: Value = resp.json().await.ok()?;
        (status == 503 && retry_after).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    assert_error(&answer, "TOO_MANY_CONNECTIONS");
    drop((hold1, hold2));
    let health = until(Duration::from_secs(5), "a slot to free", async || {
        c.get("/health").await.ok()
    })
    .await;
    assert_eq!(health["status"], "healthy");
    node.shutdown(Duration::from_secs(5)).await;
}
