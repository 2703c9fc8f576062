//! Log output: structured JSON (seed 001's fields: timestamp, level, component, worker_id,
//! action, task_id, result, duration_ms) for machines, readable lines on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `auto` (JSON unless stderr is a terminal), `json` or `text`.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_env("SENTINEL_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let json = match format {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    // A second init (tests starting several nodes in one process) keeps the first subscriber.
    let _ = result;
}
