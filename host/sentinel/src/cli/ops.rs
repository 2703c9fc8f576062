//! Operator commands: each is one or a few API calls and a table (or `--output json`).

use std::io::BufRead;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::table::{cell, items, print, print_list};
use super::{
    ClusterCommand, Command, DlqCommand, LocksCommand, MemoryCommand, Output, PageArgs,
    PluginsCommand, SubmitArgs, TaskCommand, TasksCommand, WorkersCommand,
};
use crate::client::{ApiFailure, Client, segment};

pub async fn run(command: Command, c: &Client, out: Output) -> anyhow::Result<i32> {
    let json_out = out == Output::Json;
    match command {
        Command::Dev(_)
        | Command::Worker(_)
        | Command::Tokens { .. }
        | Command::Plugins {
            command:
                PluginsCommand::Keygen { .. }
                | PluginsCommand::Sign { .. }
                | PluginsCommand::Verify { .. },
        } => {
            unreachable!("host and local commands are dispatched before operator commands")
        }
        Command::Submit(args) => submit(args, c, json_out).await,
        Command::Task {
            command: TaskCommand::Get { id },
        } => {
            let t = c.get(&format!("/v1/tasks/{}", segment(&id))).await?;
            show(&t, json_out, |t| print_task(t));
            Ok(0)
        }
        Command::Task {
            command: TaskCommand::Cancel { id },
        } => {
            let r = c
                .post(&format!("/v1/tasks/{}/cancel", segment(&id)), &json!({}))
                .await?;
            show(&r, json_out, |_| println!("cancelled {id}"));
            Ok(0)
        }
        Command::Tasks {
            command:
                TasksCommand::List {
                    status,
                    task_type,
                    page,
                },
        } => {
            let mut q = "/v1/tasks?".to_string();
            if let Some(s) = status {
                q.push_str(&format!("status={}&", segment(&s)));
            }
            if let Some(t) = task_type {
                q.push_str(&format!("type={}&", segment(&t)));
            }
            let r = list(c, &q, "tasks", &page, json_out).await?;
            show(&r, json_out, |r| task_table(&r["tasks"]));
            Ok(0)
        }
        Command::Workers {
            command:
                WorkersCommand::List {
                    status,
                    health,
                    page,
                },
        } => {
            let mut q = "/v1/workers?".to_string();
            if let Some(s) = status {
                q.push_str(&format!("status={}&", segment(&s)));
            }
            if let Some(h) = health {
                q.push_str(&format!("health={}&", segment(&h)));
            }
            let r = list(c, &q, "workers", &page, json_out).await?;
            show(&r, json_out, |r| {
                let rows: Vec<Vec<String>> = items(&r["workers"])
                    .map(|w| {
                        vec![
                            cell(&w["worker_id"]),
                            cell(&w["status"]),
                            cell(&w["health"]),
                            format!(
                                "{}/{}",
                                w["capacity"]["active_tasks"], w["capacity"]["max_tasks"]
                            ),
                            cell(&w["stats"]["completed"]),
                            cell(&w["stats"]["failed"]),
                            format!(
                                "{:.1}",
                                w["stats"]["avg_duration_ms"].as_f64().unwrap_or(0.0)
                            ),
                            cell(&w["heartbeat_age_ms"]),
                        ]
                    })
                    .collect();
                print(
                    &[
                        "worker",
                        "status",
                        "health",
                        "tasks",
                        "completed",
                        "failed",
                        "avg ms",
                        "heartbeat age ms",
                    ],
                    &rows,
                );
            });
            Ok(0)
        }
        Command::Locks {
            command:
                LocksCommand::List {
                    worker,
                    include_expired,
                    page,
                },
        } => {
            let mut q = format!("/v1/locks?include_expired={include_expired}&");
            if let Some(w) = worker {
                q.push_str(&format!("worker={}&", segment(&w)));
            }
            let r = list(c, &q, "locks", &page, json_out).await?;
            show(&r, json_out, |r| {
                print_list(
                    &r["locks"],
                    &[
                        ("key", "/key"),
                        ("owner", "/owner"),
                        ("token", "/token"),
                        ("expires", "/expires_at"),
                    ],
                )
            });
            Ok(0)
        }
        Command::Memory { command } => memory(command, c, json_out).await,
        Command::Cluster {
            command: ClusterCommand::Health,
        } => {
            let r = c.get("/cluster/health").await?;
            show(&r, json_out, |r| {
                let rows: Vec<Vec<String>> = r
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| vec![k.clone(), cell(v)])
                    .collect();
                print(&["field", "value"], &rows);
            });
            Ok(if r["status"] == "unhealthy" { 2 } else { 0 })
        }
        Command::Cluster {
            command: ClusterCommand::Load,
        } => {
            let r = c.get("/v1/cluster/load").await?;
            show(&r, json_out, |r| {
                let d = &r["distribution"];
                println!(
                    "strategy {}  utilization {:.1}%",
                    cell(&r["strategy"]),
                    d["utilization_percent"].as_f64().unwrap_or(0.0)
                );
                let rows: Vec<Vec<String>> = items(&d["worker_loads"])
                    .map(|w| {
                        vec![
                            cell(&w["worker_id"]),
                            cell(&w["active_tasks"]),
                            cell(&w["capacity"]),
                            format!("{:.1}", w["utilization_percent"].as_f64().unwrap_or(0.0)),
                        ]
                    })
                    .collect();
                print(&["worker", "active", "capacity", "utilization %"], &rows);
            });
            Ok(0)
        }
        Command::Dlq {
            command: DlqCommand::List { page },
        } => {
            let r = list(c, "/v1/dlq?", "tasks", &page, json_out).await?;
            show(&r, json_out, |r| task_table(&r["tasks"]));
            Ok(0)
        }
        Command::Dlq {
            command: DlqCommand::Retry { id },
        } => {
            let r = c
                .post(&format!("/v1/dlq/{}/retry", segment(&id)), &json!({}))
                .await?;
            show(&r, json_out, |_| println!("requeued {id}"));
            Ok(0)
        }
        Command::Plugins {
            command: PluginsCommand::List,
        } => {
            let r = c.get("/v1/plugins").await?;
            show(&r, json_out, |r| {
                let rows: Vec<Vec<String>> = items(&r["plugins"])
                    .map(|p| {
                        vec![
                            cell(&p["name"]),
                            cell(&p["kind"]),
                            cell(&p["version"]),
                            p["task_types"]
                                .as_array()
                                .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(","))
                                .unwrap_or_default(),
                            cell(&p["error"]),
                        ]
                    })
                    .collect();
                print(&["name", "kind", "version", "task types", "error"], &rows);
            });
            Ok(0)
        }
        Command::Plugins {
            command: PluginsCommand::Check { file },
        } => check_plugin(&file, json_out).await,
    }
}

/// One page of a list endpoint (`path` ends in `?` or `&`), or every page with `--all`: the
/// items under `key` and the `next_cursor` (always null with `--all`). In table output a next
/// page is announced on stderr.
async fn list(
    c: &Client,
    path: &str,
    key: &str,
    page: &PageArgs,
    json_out: bool,
) -> anyhow::Result<Value> {
    let mut base = path.to_string();
    if let Some(l) = page.limit {
        base.push_str(&format!("limit={l}&"));
    }
    if let Some(o) = &page.order {
        base.push_str(&format!("order={o}&"));
    }
    let mut cursor = page.cursor.clone();
    let mut all = Vec::new();
    loop {
        let mut q = base.clone();
        if let Some(cur) = &cursor {
            q.push_str(&format!("cursor={}", segment(cur)));
        }
        let r = c.get(q.trim_end_matches(['&', '?'])).await?;
        all.extend(r[key].as_array().cloned().unwrap_or_default());
        let next = r["next_cursor"].as_str().map(str::to_string);
        match next {
            Some(n) if page.all => cursor = Some(n),
            next => {
                if let (Some(n), false) = (&next, json_out) {
                    eprintln!("more: --cursor {n} (or --all)");
                }
                return Ok(json!({ key: all, "next_cursor": next }));
            }
        }
    }
}

fn show(v: &Value, json_out: bool, human: impl FnOnce(&Value)) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        human(v);
    }
}

fn print_task(t: &Value) {
    for key in [
        "id",
        "type",
        "status",
        "priority",
        "attempt",
        "worker_id",
        "created_at",
        "finished_at",
        "error",
    ] {
        println!("{key:<12} {}", cell(&t[key]));
    }
    if let Some(p) = t.get("progress") {
        println!(
            "{:<12} {}% {}",
            "progress",
            p["percent"],
            cell(&p["message"])
        );
    }
    if let Some(o) = t.get("output") {
        println!(
            "{:<12} {}",
            "output",
            serde_json::to_string(o).unwrap_or_default()
        );
    }
}

fn task_table(tasks: &Value) {
    print_list(
        tasks,
        &[
            ("id", "/id"),
            ("type", "/type"),
            ("status", "/status"),
            ("priority", "/priority"),
            ("attempt", "/attempt"),
            ("worker", "/worker_id"),
            ("error", "/error"),
        ],
    );
}

fn read_payload(arg: &str) -> anyhow::Result<Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading payload file {path}"))?
        }
        None => arg.to_string(),
    };
    serde_json::from_str(&text).with_context(|| "the payload is not valid JSON")
}

async fn submit(a: SubmitArgs, c: &Client, json_out: bool) -> anyhow::Result<i32> {
    if let Some(file) = &a.file {
        return submit_file(file, &a, c, json_out).await;
    }
    let mut task = json!({ "type": a.task_type, "payload": read_payload(&a.payload)?, "priority": a.priority });
    if let Some(t) = a.timeout_ms {
        task["timeout_ms"] = json!(t);
    }
    if let Some(r) = a.retries {
        task["max_retries"] = json!(r);
    }
    let r = c.post("/v1/tasks", &task).await?;
    let id = r["id"]
        .as_str()
        .context("the host answered without an id")?
        .to_string();
    if !a.wait {
        show(&r, json_out, |_| println!("{id}"));
        return Ok(0);
    }
    let deadline = a.timeout.map(|t| (tokio::time::Instant::now() + t, t));
    let t = match wait_for(c, &id, deadline).await? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    if t["status"] == "completed" {
        show(&t, json_out, |t| {
            println!(
                "{}",
                serde_json::to_string_pretty(&t["output"]).unwrap_or_default()
            )
        });
        return Ok(0);
    }
    if json_out {
        show(&t, true, |_| {});
    }
    eprintln!(
        "error: task {id} is {}: {}",
        cell(&t["status"]),
        cell(&t["error"])
    );
    Ok(3)
}

/// Polls task `id` until it is completed, dead or cancelled: `Ok(task)`; or, past the
/// deadline, says so on stderr and gives exit status 4 (`Err(4)`).
async fn wait_for(
    c: &Client,
    id: &str,
    deadline: Option<(tokio::time::Instant, Duration)>,
) -> anyhow::Result<Result<Value, i32>> {
    loop {
        let t = c.get(&format!("/v1/tasks/{}", segment(id))).await?;
        if matches!(
            t["status"].as_str(),
            Some("completed" | "dead" | "cancelled")
        ) {
            return Ok(Ok(t));
        }
        if let Some((at, after)) = deadline
            && tokio::time::Instant::now() >= at
        {
            eprintln!(
                "error: timed out after {} waiting for task {id} (still {})",
                humantime::format_duration(after),
                cell(&t["status"])
            );
            return Ok(Err(4));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tasks per request of `submit --file`.
const FILE_BATCH: usize = 500;

/// `submit --file`: every line parsed, then every batch checked by the host (`dry_run`), and
/// only then stored; a bad line is named and nothing is stored. Should a batch still fail while
/// storing (the store went away), what was stored is said exactly.
async fn submit_file(
    path: &std::path::Path,
    a: &SubmitArgs,
    c: &Client,
    json_out: bool,
) -> anyhow::Result<i32> {
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
    let mut tasks = Vec::new();
    let mut lines = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{name}:{}: reading", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{name}:{}: not valid JSON; nothing was stored", n + 1))?;
        if !v.is_object() {
            bail!(
                "{name}:{}: expected a task object like {{\"type\": ..., \"payload\": ...}}; nothing was stored",
                n + 1
            );
        }
        tasks.push(v);
        lines.push(n + 1);
    }
    if tasks.is_empty() {
        bail!("{name}: no tasks");
    }
    // The host checks every task exactly as it would store it, storing nothing.
    for (b, chunk) in tasks.chunks(FILE_BATCH).enumerate() {
        if let Err(e) = c
            .post("/v1/tasks?dry_run=true", &json!({ "tasks": chunk }))
            .await
        {
            bail!(
                "{}; nothing was stored",
                at_line(&e, &name.to_string(), &lines[b * FILE_BATCH..])
            );
        }
    }
    let bar = indicatif::ProgressBar::new(tasks.len() as u64);
    if json_out {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut ids: Vec<String> = Vec::with_capacity(tasks.len());
    for (b, chunk) in tasks.chunks(FILE_BATCH).enumerate() {
        match c.post("/v1/tasks", &json!({ "tasks": chunk })).await {
            Ok(r) => {
                ids.extend(
                    r["ids"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_string)),
                );
                bar.inc(chunk.len() as u64);
            }
            Err(e) => {
                bar.finish_and_clear();
                let stored = b * FILE_BATCH;
                println!(
                    "{}",
                    json!({ "ids": ids, "stored_lines": &lines[..stored] })
                );
                let what = if stored == 0 {
                    "nothing was stored".to_string()
                } else {
                    format!(
                        "lines {}-{} ({stored} tasks, ids above) were stored, lines {} onwards were not",
                        lines[0],
                        lines[stored - 1],
                        lines[stored]
                    )
                };
                bail!(
                    "{}; {what}",
                    at_line(&e, &name.to_string(), &lines[stored..])
                );
            }
        }
    }
    bar.finish_and_clear();
    if !a.wait {
        let r = json!({ "ids": ids });
        show(&r, json_out, |_| println!("submitted {} tasks", ids.len()));
        return Ok(0);
    }
    let deadline = a.timeout.map(|t| (tokio::time::Instant::now() + t, t));
    let mut done = Vec::with_capacity(ids.len());
    let mut failed = 0;
    for id in &ids {
        match wait_for(c, id, deadline).await? {
            Ok(t) => {
                if t["status"] != "completed" {
                    failed += 1;
                    eprintln!(
                        "error: task {id} is {}: {}",
                        cell(&t["status"]),
                        cell(&t["error"])
                    );
                }
                done.push(t);
            }
            Err(code) => return Ok(code),
        }
    }
    let r = json!({ "ids": ids, "tasks": done });
    show(&r, json_out, |_| {
        println!(
            "{} tasks finished: {} completed, {failed} not",
            ids.len(),
            ids.len() - failed
        )
    });
    Ok(if failed > 0 { 3 } else { 0 })
}

/// An API error about `tasks[i]` of a batch, retold as `FILE:LINE: ...` (`lines[i]` is the file
/// line of the batch's task `i`).
fn at_line(e: &anyhow::Error, file: &str, lines: &[usize]) -> String {
    let Some(f) = e.downcast_ref::<ApiFailure>() else {
        return format!("{file}: {e:#}");
    };
    let located = f.message.strip_prefix("tasks[").and_then(|rest| {
        let (index, tail) = rest.split_once(']')?;
        let line = lines.get(index.parse::<usize>().ok()?)?;
        Some(format!(
            "{file}:{line}: {} {}: {}",
            f.status,
            f.code,
            tail.trim_start_matches(['.', ':', ' '])
        ))
    });
    located.unwrap_or_else(|| format!("{file}: {e}"))
}

async fn memory(command: MemoryCommand, c: &Client, json_out: bool) -> anyhow::Result<i32> {
    match command {
        MemoryCommand::Get { namespace, key } => {
            let r = c
                .get(&format!(
                    "/v1/memory/{}/{}",
                    segment(&namespace),
                    segment(&key)
                ))
                .await?;
            show(&r, json_out, |r| {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r["value"]).unwrap_or_default()
                )
            });
        }
        MemoryCommand::Set {
            namespace,
            key,
            value,
            ttl_ms,
        } => {
            let value: Value =
                serde_json::from_str(&value).context("the value is not valid JSON")?;
            let mut path = format!("/v1/memory/{}/{}", segment(&namespace), segment(&key));
            if let Some(t) = ttl_ms {
                path.push_str(&format!("?ttl_ms={t}"));
            }
            let r = c.put(&path, &value).await?;
            show(&r, json_out, |r| {
                println!("version {}", cell(&r["version"]))
            });
        }
        MemoryCommand::List {
            namespace,
            prefix,
            page,
        } => {
            let q = format!(
                "/v1/memory/{}?prefix={}&",
                segment(&namespace),
                segment(&prefix)
            );
            let r = list(c, &q, "entries", &page, json_out).await?;
            show(&r, json_out, |r| {
                print_list(
                    &r["entries"],
                    &[
                        ("key", "/key"),
                        ("version", "/version"),
                        ("value", "/value"),
                        ("writer", "/writer"),
                    ],
                )
            });
        }
        MemoryCommand::Delete { namespace, key } => {
            let r = c
                .delete(&format!(
                    "/v1/memory/{}/{}",
                    segment(&namespace),
                    segment(&key)
                ))
                .await?;
            show(&r, json_out, |_| println!("deleted {namespace}/{key}"));
        }
    }
    Ok(0)
}

/// Validates a plugin exactly as a host would load it, without a host.
async fn check_plugin(file: &std::path::Path, json_out: bool) -> anyhow::Result<i32> {
    let manifest = file.with_extension("toml");
    let runtime = sentinel_runtime::Runtime::new(sentinel_runtime::RuntimeConfig::default())?;
    match runtime.load_files(&manifest) {
        Ok(p) => {
            let m = p.manifest();
            let r = json!({ "ok": true, "name": m.name, "kind": m.kind, "version": m.version, "sha256": p.sha256(), "task_types": m.handled_task_types() });
            show(&r, json_out, |_| {
                println!(
                    "ok: {} {} ({}), sha256 {}",
                    m.name,
                    m.version,
                    m.kind.world(),
                    p.sha256()
                )
            });
            Ok(0)
        }
        Err(e) => {
            if json_out {
                println!("{}", json!({ "ok": false, "error": e.to_string() }));
            }
            bail!("{e}")
        }
    }
}
