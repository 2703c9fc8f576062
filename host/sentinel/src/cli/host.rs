//! `sentinel dev` and `sentinel worker`: resolve settings, start a node, stop it on a signal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::HostArgs;
use crate::config::{Overrides, Settings};
use crate::node::Node;

pub async fn run(args: HostArgs, dev: bool, log_format: &str) -> anyhow::Result<i32> {
    crate::logging::init(log_format);
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let overrides = Overrides {
        config_file: args.config,
        store: args.store,
        listen: args.listen,
        plugins: args.plugins.clone(),
        data_dir: args.data_dir,
        worker_id: args.worker_id,
        hostname: args.hostname,
        max_tasks: args.max_tasks,
        prefetch: args.prefetch,
        prefetch_wait_ms: args.prefetch_wait_ms,
        task_types: args.task_types,
        labels: args.labels,
        heartbeat_interval_ms: args.heartbeat_interval_ms,
        stale_threshold_ms: args.stale_threshold_ms,
        check_interval_ms: args.check_interval_ms,
        lock_ttl_seconds: args.lock_ttl_seconds,
        lock_retry_attempts: args.lock_retry_attempts,
        lock_retry_delay_ms: args.lock_retry_delay_ms,
        strategy: args.strategy,
        memory_sync_interval_ms: args.memory_sync_interval_ms,
        memory_cache_size: args.memory_cache_size,
        insecure_no_auth: args.insecure_no_auth,
    };
    // `dev` serves the repository's example plugins (built here if missing); a `worker`
    // without --plugins reads ./plugins.
    let examples = dev.then(sentinel_guest_build::workspace_root);
    let settings = Settings::resolve(overrides, || match &examples {
        Some(root) => root.join("target/guests/plugins"),
        None => PathBuf::from("plugins"),
    })?;
    if let (Some(root), None) = (examples, &args.plugins) {
        tracing::info!("building the example plugins (the first run takes a minute)");
        let dir = root.clone();
        tokio::task::spawn_blocking(move || sentinel_guest_build::build(&dir))
            .await?
            .with_context(|| format!("building the example plugins in {}", root.display()))?;
    }
    let node = Node::start(settings).await?;
    eprintln!(
        "sentinel listening on http://{} (worker {})",
        node.local_addr, node.state.settings.worker_id
    );
    wait_for_signal().await;
    // A second signal during the drain forces exit.
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
    node.shutdown(grace).await;
    Ok(0)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
