//! Attacks on the host's resources rather than on the sandbox's walls: each tries to make
//! the host hold something without bound (descriptors, handles, disk, shared memory, a
//! huge error message) or to outlast a cancellation. The host must stop each with a typed
//! error naming the bound, and stay healthy.
//!
//! | attack | extra payload | behaviour |
//! |---|---|---|
//! | `deep-tree` | `"depth"` (default 20 000) | nests directories under `/scratch` through handles, one file per level |
//! | `fd-flood` | `"files"` (default 100 000) | opens (creates) files under `/scratch` and keeps every descriptor |
//! | `handle-hoard` | `"handles"` (default 100 000) | keeps HTTP header maps of 16 KiB and unsent outgoing bodies with a chunk written |
//! | `huge-error` | `"bytes"` (default 8 MiB) | fails with a message of that many bytes |
//! | `key-flood` | `"keys"` (default 100 000) | writes that many shared-memory keys |
//! | `disk-flood` | `"mib"` (default 4096) | writes a file under `/scratch` 1 MiB at a time |
//! | `sparse-file` | `"bytes"` (default 1 TiB) | sets a scratch file's size without writing |
//! | `wait` | `"ms"` (default 60 000) | blocks in the host (a clock pollable), never running guest code |
//!
//! Each returns `Ok` with what it managed if the host let it finish.

use serde_json::{Value, json};

use sentinel_sdk::{Output, TaskError};

use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

fn field(payload: &Value, name: &str, default: u64) -> u64 {
    payload.get(name).and_then(Value::as_u64).unwrap_or(default)
}

fn scratch() -> Result<Descriptor, TaskError> {
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, path)| path == "/scratch")
        .map(|(d, _)| d)
        .ok_or_else(|| TaskError::fatal("no /scratch preopen"))
}

fn fs_err(what: &str, e: impl std::fmt::Debug) -> TaskError {
    TaskError::fatal(format!("{what}: {e:?}"))
}

/// Runs the attack `name`, or `None` if it is not one of this module's.
pub fn run(name: &str, payload: &Value) -> Option<Result<Output, TaskError>> {
    Some(match name {
        "deep-tree" => deep_tree(field(payload, "depth", 20_000)),
        "fd-flood" => fd_flood(field(payload, "files", 100_000)),
        "handle-hoard" => handle_hoard(field(payload, "handles", 100_000)),
        "huge-error" => Err(TaskError::fatal(
            "E".repeat(field(payload, "bytes", 8 << 20) as usize),
        )),
        "key-flood" => key_flood(field(payload, "keys", 100_000)),
        "disk-flood" => disk_flood(field(payload, "mib", 4096)),
        "sparse-file" => sparse_file(field(payload, "bytes", 1 << 40)),
        "wait" => {
            let ms = field(payload, "ms", 60_000);
            wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
            Output::json(&json!({ "waited_ms": ms }))
        }
        _ => return None,
    })
}

fn deep_tree(depth: u64) -> Result<Output, TaskError> {
    let mut dir = scratch()?;
    for level in 0..depth {
        dir.create_directory_at("d")
            .map_err(|e| fs_err(&format!("mkdir at level {level}"), e))?;
        let file = dir
            .open_at(
                PathFlags::empty(),
                "f",
                OpenFlags::CREATE,
                DescriptorFlags::WRITE,
            )
            .map_err(|e| fs_err("create file", e))?;
        drop(file);
        dir = dir
            .open_at(
                PathFlags::empty(),
                "d",
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
            )
            .map_err(|e| fs_err(&format!("open level {level}"), e))?;
    }
    Output::json(&json!({ "depth": depth }))
}

fn fd_flood(files: u64) -> Result<Output, TaskError> {
    let dir = scratch()?;
    let mut held = Vec::new();
    for i in 0..files {
        let file = dir
            .open_at(
                PathFlags::empty(),
                &format!("f{i}"),
                OpenFlags::CREATE,
                DescriptorFlags::WRITE,
            )
            .map_err(|e| fs_err(&format!("open file {i}"), e))?;
        held.push(file);
    }
    Output::json(&json!({ "held": held.len() }))
}

fn handle_hoard(handles: u64) -> Result<Output, TaskError> {
    use wasip2::http::types::{Fields, OutgoingRequest};
    let value = vec![b'a'; 15 << 10];
    let chunk = vec![b'b'; 4096];
    let mut fields = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..handles {
        if i % 2 == 0 {
            let f = Fields::new();
            f.append("x-hoard", &value)
                .map_err(|e| fs_err("append header", e))?;
            fields.push(f);
        } else {
            let request = OutgoingRequest::new(Fields::new());
            let body = request.body().map_err(|()| fs_err("body", ()))?;
            let stream = body.write().map_err(|()| fs_err("body stream", ()))?;
            // Whatever the host lets through without waiting: it buffers it for us.
            if let Ok(n) = stream.check_write() {
                let n = (n as usize).min(chunk.len());
                let _ = stream.write(&chunk[..n]);
            }
            bodies.push((request, body, stream));
        }
    }
    Output::json(&json!({ "fields": fields.len(), "bodies": bodies.len() }))
}

fn key_flood(keys: u64) -> Result<Output, TaskError> {
    let bucket = sentinel_sdk::memory::open("flood")?;
    for i in 0..keys {
        bucket.set_json(&format!("k{i}"), &json!(i))?;
    }
    Output::json(&json!({ "keys": keys }))
}

fn disk_flood(mib: u64) -> Result<Output, TaskError> {
    let dir = scratch()?;
    let file = dir
        .open_at(
            PathFlags::empty(),
            "flood",
            OpenFlags::CREATE,
            DescriptorFlags::WRITE,
        )
        .map_err(|e| fs_err("create", e))?;
    let chunk = vec![b'z'; 1 << 20];
    for i in 0..mib {
        file.write(&chunk, i << 20)
            .map_err(|e| fs_err(&format!("write MiB {i}"), e))?;
    }
    Output::json(&json!({ "mib": mib }))
}

fn sparse_file(bytes: u64) -> Result<Output, TaskError> {
    let dir = scratch()?;
    let file = dir
        .open_at(
            PathFlags::empty(),
            "sparse",
            OpenFlags::CREATE,
            DescriptorFlags::WRITE,
        )
        .map_err(|e| fs_err("create", e))?;
    file.set_size(bytes).map_err(|e| fs_err("set-size", e))?;
    // Stay alive long enough for the host's quota check to see it.
    wasip2::clocks::monotonic_clock::subscribe_duration(500_000_000).block();
    Output::json(&json!({ "bytes": bytes }))
}
