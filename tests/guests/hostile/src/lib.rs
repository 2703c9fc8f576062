//! `hostile`: a test executor (task type `hostile`) that attacks its sandbox.
//!
//! The payload `{"attack": "<name>", ...}` selects the attack. The convention, for the
//! attacks that probe the sandbox: **`Ok` means the attack worked, `Err` (non-retryable)
//! means it was denied**, with the guest's view of the error in the message.
//!
//! | attack | extra payload | behaviour |
//! |---|---|---|
//! | `loop` | | spins forever (CPU / timeout limits) |
//! | `memory-bomb` | | allocates and touches 1 MiB chunks until allocation fails (memory limit; the Rust allocator aborts, an `unreachable` trap, unless the host traps the failed `memory.grow` first) |
//! | `read-passwd` | | reads `/etc/passwd`: `Ok({"content": ...})`, or `Err` if denied |
//! | `escape-scratch` | | reads `/scratch/../etc/passwd` and `/scratch/../../etc/passwd`, writes `/scratch/../x`, `/scratch/../../x` and `../x`: `Ok({"escaped": true, "attempts": [...]})` if any of them worked, else `Err("escape-scratch: all attempts denied: ...")` |
//! | `write-readonly` | | writes `/ro/x`: `Ok({"written": true})` if it worked, else `Err` |
//! | `read-env` | `"var": "NAME"` | `Ok({"value": "<value>"})`, or `Ok({"value": null})` when the variable is not visible |
//! | `big-output` | `"bytes": N` (default 100 MiB) | returns N bytes of `x` (output limit; needs N bytes of linear memory, so above `memory-mb` it runs out of memory first) |
//! | `deep-recursion` | | recurses without bound, with a frame that outlives the call (stack exhaustion trap) |
//! | `panic` | | `panic!("hostile panic: boom")` |
//! | `http` | `"url": "http://host/path"` | a `wasi:http` outgoing GET: `Ok({"status": N})`, or `Err(<error code>)` |
//! | `scratch-write` | | writes `/scratch/hostile.txt`, reads it back: `Ok({"ok": true, "content": ...})` |
//! | `kv` | `"bucket"`, `"key"`, `"value"` (defaults `hostile`, `key`, `"value"`) | opens the bucket, sets the key to the JSON value, reads it back: `Ok({"value": <value>})` |
//! | `config` | `"key"` | `Ok({"value": <string or null>})` from `wasi:config` |
//! | `log-flood` | `"lines": N` (default 10 000) | logs N lines of 1 KiB, then `Ok({"logged": N})` |
//! | `ok` | | `Ok({"ok": true})` |
//!
//! Attacks on the host's resources (descriptor floods, deep trees, huge errors, ...) are in
//! `hoard.rs`, with their own table.
//!
//! Unknown attacks and payloads without `attack` are non-retryable errors.
//!
//! The HTTP attack uses the `wasip2` crate's `wasi:http` bindings (`wasip2::http`), so
//! this component imports `wasi:http/outgoing-handler@0.2.x` and `wasi:http/types@0.2.x`
//! on top of what every Rust `wasm32-wasip2` guest imports.

use std::hint::black_box;

use serde_json::{Value, json};

use sentinel_sdk::{Executor, Output, Task, TaskError};

mod hoard;

/// The `hostile` executor.
pub struct Hostile;

impl Executor for Hostile {
    fn run(task: Task) -> Result<Output, TaskError> {
        let payload: Value = task.json()?;
        let attack = payload
            .get("attack")
            .and_then(Value::as_str)
            .ok_or_else(|| TaskError::fatal("invalid payload: `attack` (a string) is required"))?;
        let str_field = |name: &str| payload.get(name).and_then(Value::as_str);
        if let Some(result) = hoard::run(attack, &payload) {
            return result;
        }
        match attack {
            "loop" => spin(),
            "memory-bomb" => memory_bomb(),
            "read-passwd" => match std::fs::read_to_string("/etc/passwd") {
                Ok(content) => Output::json(&json!({ "content": content })),
                Err(e) => Err(TaskError::fatal(format!("read /etc/passwd denied: {e}"))),
            },
            "escape-scratch" => escape_scratch(),
            "write-readonly" => match std::fs::write("/ro/x", b"hostile") {
                Ok(()) => Output::json(&json!({ "written": true })),
                Err(e) => Err(TaskError::fatal(format!("write /ro/x denied: {e}"))),
            },
            "read-env" => {
                let var = str_field("var")
                    .or_else(|| str_field("name"))
                    .ok_or_else(|| TaskError::fatal("invalid payload: `var` is required"))?;
                Output::json(&json!({ "value": std::env::var(var).ok() }))
            }
            "big-output" => {
                let bytes = payload
                    .get("bytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(100 * 1024 * 1024);
                Ok(Output::bytes(vec![b'x'; bytes as usize]))
            }
            "deep-recursion" => Output::json(&json!({ "depth": recurse(0) })),
            "panic" => panic!("hostile panic: boom"),
            "http" => {
                let url = str_field("url")
                    .ok_or_else(|| TaskError::fatal("invalid payload: `url` is required"))?;
                match http_get(url) {
                    Ok(status) => Output::json(&json!({ "status": status })),
                    Err(e) => Err(TaskError::fatal(e)),
                }
            }
            "scratch-write" => scratch_write(&task),
            "kv" => {
                let bucket = str_field("bucket").unwrap_or("hostile");
                let key = str_field("key").unwrap_or("key");
                let value = payload.get("value").cloned().unwrap_or(json!("value"));
                let bucket = sentinel_sdk::memory::open(bucket)?;
                bucket.set_json(key, &value)?;
                let back: Option<Value> = bucket.get_json(key)?;
                Output::json(&json!({ "value": back }))
            }
            "config" => {
                let key = str_field("key")
                    .ok_or_else(|| TaskError::fatal("invalid payload: `key` is required"))?;
                Output::json(&json!({ "value": sentinel_sdk::config::get(key) }))
            }
            "log-flood" => {
                let lines = payload
                    .get("lines")
                    .and_then(Value::as_u64)
                    .unwrap_or(10_000);
                let line = "x".repeat(1024);
                for i in 0..lines {
                    sentinel_sdk::log::log(sentinel_sdk::log::Level::Info, "hostile", &line);
                    black_box(i);
                }
                Output::json(&json!({ "logged": lines }))
            }
            "ok" => Output::json(&json!({ "ok": true })),
            other => Err(TaskError::fatal(format!(
                "invalid payload: unknown attack `{other}`"
            ))),
        }
    }
}

sentinel_sdk::export_executor!(Hostile);

/// Spins forever; `black_box` keeps the loop (and its side effect) alive.
fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks, touching every page, until allocation fails.
fn memory_bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = Vec::<u8>::with_capacity(1 << 20);
        chunk.resize(1 << 20, 0xA5);
        hoard.push(black_box(chunk));
    }
}

/// Recurses without bound. The frame's buffer is read after the recursive call, so
/// the call cannot be a tail call; the `black_box` exit keeps the compiler from proving
/// the recursion infinite.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 512];
    frame[(depth % 512) as usize] = depth as u8;
    let frame = black_box(frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = recurse(depth + 1);
    below.wrapping_add(u64::from(frame[(depth % 512) as usize])) + 1
}

fn escape_scratch() -> Result<Output, TaskError> {
    let mut attempts = Vec::new();
    let mut escaped = false;
    for path in ["/scratch/../etc/passwd", "/scratch/../../etc/passwd"] {
        let r = std::fs::read_to_string(path);
        escaped |= r.is_ok();
        attempts.push(json!({
            "op": "read",
            "path": path,
            "ok": r.is_ok(),
            "detail": match r {
                Ok(content) => content.chars().take(200).collect::<String>(),
                Err(e) => e.to_string(),
            },
        }));
    }
    for path in ["/scratch/../x", "/scratch/../../x", "../x"] {
        let r = std::fs::write(path, b"escaped");
        escaped |= r.is_ok();
        attempts.push(json!({
            "op": "write",
            "path": path,
            "ok": r.is_ok(),
            "detail": match r {
                Ok(()) => "written".to_string(),
                Err(e) => e.to_string(),
            },
        }));
    }
    if escaped {
        Output::json(&json!({ "escaped": true, "attempts": attempts }))
    } else {
        Err(TaskError::fatal(format!(
            "escape-scratch: all attempts denied: {}",
            Value::Array(attempts)
        )))
    }
}

fn scratch_write(task: &Task) -> Result<Output, TaskError> {
    let path = "/scratch/hostile.txt";
    let content = format!("hostile was here (task {:?})", task.id);
    std::fs::write(path, &content)
        .map_err(|e| TaskError::fatal(format!("write {path} failed: {e}")))?;
    let back = std::fs::read_to_string(path)
        .map_err(|e| TaskError::fatal(format!("read {path} failed: {e}")))?;
    if back != content {
        return Err(TaskError::fatal(format!(
            "read back {back:?}, wrote {content:?}"
        )));
    }
    Output::json(&json!({ "ok": true, "content": back }))
}

/// A `wasi:http` GET of `url` (`http://` or `https://`); the response status or the error.
fn http_get(url: &str) -> Result<u16, String> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(format!(
            "unsupported URL {url:?}: expected http:// or https://"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };

    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .map_err(|()| "invalid method".to_string())?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "invalid scheme".to_string())?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("invalid authority {authority:?}"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("invalid path {path:?}"))?;

    let response = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    response.subscribe().block();
    match response.get() {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(e))) => Err(format!("{e:?}")),
        Some(Err(())) => Err("response already taken".to_string()),
        None => Err("response not ready after the pollable fired".to_string()),
    }
}
