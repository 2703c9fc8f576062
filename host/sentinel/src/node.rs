//! One Sentinel host: store, sandbox runtime, plugin folder, coordination managers, the
//! execution loop and the HTTP API, started together and stopped in order.
//!
//! This is the only place that knows how the pieces fit; `main.rs` parses arguments and
//! calls `Node::start`, tests start nodes in-process the same way.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use sentinel_coord::balancer::{LoadBalancer, StrategyKind};
use sentinel_coord::heartbeat::{HeartbeatMonitor, Maintenance};
use sentinel_coord::locks::LockManager;
use sentinel_coord::model::{
    HeartbeatInfo, WorkerCapabilities, WorkerCapacity, WorkerRegistration, WorkerStatus,
    new_incarnation,
};
use sentinel_coord::queue::Queue;
use sentinel_coord::registry::WorkerRegistry;
use sentinel_coord::{SqliteStore, Store};
use sentinel_postgres::PgStore;
use sentinel_runtime::{PluginFolder, Runtime, RuntimeConfig, TaskServices};

use crate::bridges::{StoreKv, WasmStrategy};
use crate::cancels::CancelBoard;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::worker::{ProgressBoard, Worker, WorkerContext};

/// Everything the API handlers reach.
pub struct NodeState {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub folder: Arc<PluginFolder>,
    pub queue: Queue,
    pub registry: WorkerRegistry,
    pub locks: LockManager,
    pub balancer: LoadBalancer,
    pub metrics: Arc<Metrics>,
    pub progress: Arc<ProgressBoard>,
    /// Tasks running here, for cancellation.
    pub cancels: Arc<CancelBoard>,
    pub started: Instant,
    pub active: Arc<std::sync::atomic::AtomicU32>,
}

/// A running host.
pub struct Node {
    pub state: Arc<NodeState>,
    pub local_addr: std::net::SocketAddr,
    worker: Worker,
    monitor: Arc<HeartbeatMonitor>,
    /// This process start (see `WorkerRegistration::incarnation`).
    incarnation: u64,
    maintenance: tokio::task::JoinHandle<()>,
    server: tokio::task::JoinHandle<()>,
    server_stop: tokio::sync::oneshot::Sender<()>,
    _watch: sentinel_runtime::folder::FolderWatch,
    _cancel_notices: sentinel_coord::memory::WatchHandle,
}

/// Opens the store a URL names, with the default trust settings.
pub fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    open_store_with(url, &crate::trust::TrustSettings::default())
}

/// Opens the store a URL names; `trust` says whose GitHub submissions run.
pub fn open_store_with(
    url: &str,
    trust: &crate::trust::TrustSettings,
) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = std::path::Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let store = SqliteStore::open(path)
            .with_context(|| format!("opening the SQLite store at {}", path.display()))?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Opens without waiting for the server: the schema is migrated on first use, and calls
        // report `Unavailable` (retried by callers) until the database answers. The URL is not
        // echoed: it may carry a password.
        let store = PgStore::open(url).context("opening the PostgreSQL store")?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("github://") {
        // Token from GITHUB_TOKEN, API base from GITHUB_API_URL (GitHub Enterprise). Without a
        // token every write would be refused: say so now rather than after the first claim.
        if std::env::var("GITHUB_TOKEN").map_or(true, |t| t.trim().is_empty()) {
            anyhow::bail!(
                "store {url}: GITHUB_TOKEN is not set (a token with Issues and Contents read/write on the repository)"
            );
        }
        let mut config =
            sentinel_github::GithubConfig::from_url(url).context("reading the GitHub store URL")?;
        config.submitters = trust.github_submitters.clone();
        let store = sentinel_github::GithubStore::open(config, sentinel_coord::clock::system())
            .context("opening the GitHub store")?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!(
        "store {url}: unsupported URL; use sqlite://PATH, postgres://… or github://OWNER/REPO"
    )
}

/// Wraps the store so that what this host's workers write is sealed with the fleet secret and
/// what it reads is verified (see `sentinel_coord::trust`).
fn sealed(
    store: Arc<dyn Store>,
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<dyn Store>> {
    let keys = settings.trust.fleet.clone();
    if keys.is_none() && store.backend_name() != "sqlite" {
        tracing::warn!(
            store = store.backend_name(),
            "NO FLEET SECRET: this host shares a {} store without authenticating workers, so anyone who can write to the store can pose as a worker. Set SENTINEL_FLEET_SECRET (or trust.fleetSecretFile) on every host of the fleet.",
            store.backend_name()
        );
    }
    let id = store_identity(&settings.store_url)?;
    let m = metrics.clone();
    let hook: sentinel_coord::trust::RejectHook = Arc::new(move |record: &str, _: &str| {
        m.unsealed_records.with_label_values(&[record]).inc();
    });
    Ok(Arc::new(
        sentinel_coord::trust::SealedStore::new(store, keys, id).with_reject_hook(hook),
    ))
}

/// What names the store the same way on every host of a fleet (it is part of every seal, so a
/// record copied from another store does not verify): the SQLite file's canonical path, the
/// PostgreSQL database and schema, the GitHub repository. Never includes credentials.
pub fn store_identity(url: &str) -> anyhow::Result<String> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("resolving the SQLite path {path}"))?;
        return Ok(format!("sqlite:{}", path.display()));
    }
    if let Some(rest) = url.strip_prefix("github://") {
        let repo = rest.split(['?', '#']).next().unwrap_or_default();
        return Ok(format!(
            "github:{}",
            repo.trim_end_matches('/').to_ascii_lowercase()
        ));
    }
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| anyhow::anyhow!("store {url}: unsupported URL"))?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let database = param("dbname")
        .or_else(|| location.split_once('/').map(|(_, db)| db.to_string()))
        .filter(|db| !db.is_empty())
        .unwrap_or_else(|| "postgres".into());
    let schema = param("schema").unwrap_or_else(|| "public".into());
    Ok(format!("postgres:{database}/{schema}"))
}

impl Node {
    /// Starts every part of the host and begins serving.
    pub async fn start(settings: Settings) -> anyhow::Result<Node> {
        ensure_descriptors(&settings);
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
        let metrics = Arc::new(Metrics::new(&settings.worker_id));
        let store = sealed(
            open_store_with(&settings.store_url, &settings.trust)?,
            &settings,
            &metrics,
        )?;
        // Weights and quotas live in the store, where every host of the fleet enforces them.
        for (name, policy) in &settings.tenancy.tenants {
            store
                .put_tenant(&policy.settings(name))
                .await
                .with_context(|| format!("storing tenant {name}'s weight and quotas"))?;
        }

        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(settings.data_dir.join("component-cache")),
            policy: settings.policy.clone(),
            ..RuntimeConfig::default()
        })?;
        let folder = PluginFolder::open_with(
            runtime.clone(),
            &settings.plugins_dir,
            settings.trust.signatures.clone(),
        )
        .await?;
        let watch = folder.watch().context("watching the plugin folder")?;
        for p in folder.list() {
            if let Some(error) = &p.error {
                tracing::error!(plugin = %p.name, %error, "plugin rejected at start");
            }
        }
        metrics
            .plugins_loaded
            .set(folder.list().iter().filter(|p| p.kind.is_some()).count() as i64);

        let coord = &settings.coord;
        let registry = WorkerRegistry::new(store.clone(), coord.registry.clone());
        let queue = Queue::new(store.clone(), coord.queue.clone());
        let locks = LockManager::new(store.clone(), coord.locking.clone());
        let balancer = LoadBalancer::new(
            store.clone(),
            WorkerRegistry::new(store.clone(), coord.registry.clone()),
            StrategyKind::LeastLoaded,
        );
        set_strategy(&balancer, &settings.strategy, &folder)?;

        let task_types = settings
            .task_types
            .clone()
            .unwrap_or_else(|| folder.task_types());
        // A worker id is a name; this process start is a new incarnation. Registering it
        // requeues whatever a previous process under the same id was still running.
        let incarnation = new_incarnation();
        let registration = WorkerRegistration {
            worker_id: settings.worker_id.clone(),
            hostname: settings.hostname.clone(),
            capacity: WorkerCapacity::with_max(settings.max_tasks),
            capabilities: WorkerCapabilities {
                cpu_cores: settings.cpu_cores,
                memory_mb: settings.memory_mb,
                supported_task_types: task_types,
            },
            metadata: serde_json::json!({
                "labels": settings.labels,
                "pid": std::process::id(),
                "version": env!("CARGO_PKG_VERSION"),
                "listen": settings.listen.to_string(),
            }),
            incarnation,
            heartbeat_interval_ms: coord.heartbeat.interval_ms,
            stale_threshold_ms: coord.heartbeat.stale_threshold_ms,
        };
        registry
            .register(&registration)
            .await
            .context("registering this worker")?;

        let progress = Arc::new(ProgressBoard::default());
        let cancels = Arc::new(CancelBoard::default());
        let cancel_notices = cancels
            .follow(store.clone(), &settings.worker_id)
            .await
            .context("following cancellation notices")?;
        let services = TaskServices {
            kv: Arc::new(StoreKv {
                store: store.clone(),
                writer: settings.worker_id.clone(),
            }),
            progress: progress.clone(),
        };
        let worker = Worker::start(WorkerContext {
            worker_id: settings.worker_id.clone(),
            store: store.clone(),
            folder: folder.clone(),
            services,
            progress: progress.clone(),
            cancels: cancels.clone(),
            metrics: metrics.clone(),
            max_tasks: settings.max_tasks,
            prefetch: settings.prefetch,
            prefetch_wait: settings.prefetch_wait,
            task_types: settings.task_types.clone(),
            lease_ms: coord.queue.lease_ms,
            incarnation,
            idle_poll: Duration::from_millis(coord.queue.idle_poll_ms),
            retry: coord.queue.retry.clone(),
            tenancy: Arc::new(settings.tenancy.clone()),
        });

        let monitor = Arc::new(HeartbeatMonitor::new(
            store.clone(),
            WorkerRegistry::new(store.clone(), coord.registry.clone()),
            coord.heartbeat.clone(),
            coord.queue.lease_ms,
        ));
        let active = worker.active_counter();
        {
            let active = active.clone();
            let max = settings.max_tasks;
            let m = metrics.clone();
            monitor.start(
                &settings.worker_id,
                incarnation,
                Arc::new(move || {
                    m.heartbeats.with_label_values(&["sent"]).inc();
                    let n = active.load(Ordering::Relaxed);
                    HeartbeatInfo {
                        load: Some(n as f64 / max.max(1) as f64),
                        memory_bytes: resident_memory_bytes(),
                        active_tasks: Some(n),
                        extra: serde_json::Value::Null,
                        seal: None,
                    }
                }),
            );
        }
        let maintenance = Arc::new(Maintenance::new(
            store.clone(),
            settings.worker_id.clone(),
            monitor.clone(),
            coord.queue.clone(),
            coord.memory_sync.clone(),
        ))
        .spawn();

        let state = Arc::new(NodeState {
            settings: settings.clone(),
            store,
            folder,
            queue,
            registry,
            locks,
            balancer,
            metrics,
            progress,
            cancels,
            started: Instant::now(),
            active,
        });
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("listening on {}", settings.listen))?;
        let local_addr = listener.local_addr()?;
        let (server_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = crate::api::router(state.clone());
        let server = tokio::spawn(serve(listener, app, settings.http.clone(), stop_rx));
        tracing::info!(
            worker_id = %settings.worker_id,
            listen = %local_addr,
            store = %settings.store_url,
            plugins = %settings.plugins_dir.display(),
            task_types = ?state.folder.task_types(),
            "sentinel host started"
        );
        Ok(Node {
            state,
            local_addr,
            worker,
            monitor,
            incarnation,
            maintenance,
            server,
            server_stop,
            _watch: watch,
            _cancel_notices: cancel_notices,
        })
    }

    /// Graceful shutdown: stop claiming, let running tasks finish within `grace`, release this
    /// worker's locks, deregister. Tasks still running after `grace` are left leased to this
    /// worker and are requeued by recovery once it is declared dead.
    pub async fn shutdown(self, grace: Duration) {
        let s = &self.state;
        let id = &s.settings.worker_id;
        tracing::info!(worker_id = %id, grace_ms = grace.as_millis() as u64, "draining");
        if let Err(e) = s
            .registry
            .update_own_status(id, Some(self.incarnation), WorkerStatus::Draining, None)
            .await
        {
            tracing::warn!(error = %e, "could not mark this worker draining");
        }
        let left = self.worker.drain(grace).await;
        if left > 0 {
            tracing::warn!(
                tasks = left,
                "grace period over with tasks still running; they will be requeued by recovery"
            );
        } else {
            match s.locks.release_worker_locks(id).await {
                Ok(n) if n > 0 => tracing::info!(locks = n, "released this worker's locks"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "releasing locks"),
            }
            if let Err(e) = s.registry.deregister(id).await {
                tracing::warn!(error = %e, "deregistering");
            }
        }
        self.monitor.stop();
        self.maintenance.abort();
        let _ = self.server_stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        tracing::info!(worker_id = %id, "stopped");
    }
}

/// The HTTP server: HTTP/1.1 on each accepted connection with the header read timeout (which
/// also closes idle keep-alive connections), our limits on the head with hyper's larger ones as a
/// last resort, and at most `max_connections` connections at once: the next is answered a JSON
/// 503 and closed, so a flood of slow clients cannot starve the others of answers.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    http: crate::config::HttpSettings,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let slots = Arc::new(tokio::sync::Semaphore::new(http.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_timeout)
        // Last resort only: our own limits (checked in JSON by the router) are smaller.
        .max_headers(http.max_headers.saturating_mul(2).max(100))
        .max_buf_size((2 * (http.max_uri_bytes + http.max_header_bytes)).max(64 << 10));
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = http.max_connections, "connection limit reached; refusing");
            tokio::spawn(refuse_connection(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {
            tracing::warn!("HTTP connections still open after 5 s; closing them");
        }
    }
}

/// Answers a connection over the limit with a JSON 503 and closes it.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const BODY: &str = r#"{"error":{"code":"TOO_MANY_CONNECTIONS","message":"this host is serving its maximum number of connections; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Drain what the client sent so that closing does not reset the connection before it
        // reads the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

pub fn set_strategy(
    balancer: &LoadBalancer,
    name: &str,
    folder: &Arc<PluginFolder>,
) -> anyhow::Result<()> {
    if let Some(plugin_name) = name.strip_prefix("plugin:") {
        let plugin = folder.strategy(plugin_name).with_context(|| {
            format!("loadBalancer.strategy: no strategy plugin named {plugin_name:?} is loaded")
        })?;
        balancer.set_strategy(Arc::new(WasmStrategy {
            name: name.to_string(),
            plugin,
            runtime: folder.runtime().clone(),
        }));
    } else {
        let kind = StrategyKind::parse(name)
            .with_context(|| format!("loadBalancer.strategy: unknown strategy {name:?}"))?;
        balancer.set_builtin(kind);
    }
    Ok(())
}

/// Resident set size of this process, from /proc (Linux); `None` elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Raises the process's descriptor limit to its hard maximum and warns when the slots'
/// worst case (every task holding all its host handles as open files) could exhaust it:
/// the API must always have descriptors left to accept connections.
fn ensure_descriptors(settings: &Settings) {
    /// Descriptors kept for the HTTP server, the store and the plugin folder.
    const RESERVE: u64 = 1024;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let available = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur as u64
    };
    let worst = u64::from(settings.max_tasks)
        .saturating_mul(settings.policy.max_limits.host_handles)
        .saturating_add(RESERVE);
    if worst > available {
        tracing::warn!(
            descriptors = available,
            needed = worst,
            max_tasks = settings.max_tasks,
            host_handles = settings.policy.max_limits.host_handles,
            "the descriptor limit is below max_tasks x host-handles + {RESERVE}: raise `ulimit -n` or lower the limits"
        );
    }
}
