//! Host configuration: seed 001's `task-sentinel.config.json` keys (JSON or TOML), the seed's
//! environment variables and command-line flags, flags winning over the environment, the
//! environment over the file, the file over defaults.
//!
//! Everything is validated once, at start, with a message naming the offending key; nothing
//! downstream re-reads the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sentinel_coord::balancer::StrategyKind;
use sentinel_coord::config::{CoordConfig, HeartbeatConfig};
use serde::Deserialize;

/// The configuration file, as written by an operator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// Seed 001 `distributed` section.
    #[serde(default)]
    pub distributed: DistributedSection,
    /// Seed 001 `capacity` section.
    #[serde(default)]
    pub capacity: CapacitySection,
    /// `sqlite://PATH` (default under the data dir) or `postgres://…`.
    pub store: Option<String>,
    /// HTTP listen address.
    pub listen: Option<String>,
    /// Plugin folder.
    pub plugins: Option<PathBuf>,
    /// Data directory (embedded store, scratch, component cache).
    pub data_dir: Option<PathBuf>,
    /// Worker labels (region, zone, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Who may call the API: hashed tokens with a tenant and role. None: no authentication
    /// (allowed only on loopback, or with `--insecure-no-auth`).
    #[serde(default)]
    pub auth: crate::tenancy::config::AuthSection,
    /// Tenant name → its policy (task types, sandbox ceiling, weight, quotas); parsed by
    /// [`crate::tenancy::config`], which names the offending key.
    #[serde(default)]
    pub tenants: BTreeMap<String, serde_json::Value>,
    /// Plugin signatures (and, for fleets, the fleet secret); see [`crate::trust::config`].
    #[serde(default)]
    pub trust: crate::trust::TrustSection,
    /// Sandbox policy.
    #[serde(default)]
    pub sandbox: SandboxSection,
    /// Largest accepted task payload, bytes.
    pub max_payload_bytes: Option<usize>,
    /// HTTP server limits and timeouts.
    #[serde(default)]
    pub http: HttpSection,
}

/// HTTP server hygiene: how long a client may take and how much it may send.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSection {
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_body_bytes: Option<usize>,
}

/// Seed 001 `distributed`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DistributedSection {
    /// Informational in the seed; Sentinel is always distributed.
    pub enabled: Option<bool>,
    pub worker_id: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub locking: LockingSection,
    #[serde(default)]
    pub registry: RegistrySection,
    #[serde(default)]
    pub heartbeat: HeartbeatSection,
    #[serde(default)]
    pub load_balancer: LoadBalancerSection,
    #[serde(default)]
    pub memory_sync: MemorySyncSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockingSection {
    pub ttl_seconds: Option<u64>,
    pub retry_attempts: Option<u32>,
    pub retry_delay_ms: Option<u64>,
    pub cleanup_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySection {
    pub max_workers: Option<u32>,
    pub health_check_interval_ms: Option<u64>,
    pub stale_threshold_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatSection {
    pub interval_ms: Option<u64>,
    pub stale_threshold_ms: Option<u64>,
    pub check_interval_ms: Option<u64>,
    pub recovery_enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSection {
    pub strategy: Option<String>,
    pub affinity_enabled: Option<bool>,
    pub rebalance_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemorySyncSection {
    pub interval_ms: Option<u64>,
    pub conflict_resolution: Option<String>,
    pub cache_size: Option<usize>,
    pub namespaces: Option<Vec<String>>,
}

/// Seed 001 `capacity`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapacitySection {
    pub max_concurrent_tasks: Option<u32>,
    /// Tasks claimed ahead of free slots (the local buffer).
    pub prefetch: Option<u32>,
    /// Longest a buffered task waits for a slot (ms).
    pub prefetch_wait_ms: Option<u64>,
    pub cpu_cores: Option<u32>,
    pub memory_mb: Option<u64>,
    pub supported_task_types: Option<Vec<String>>,
}

/// What plugins may be granted on this host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxSection {
    /// Named read-only directories: name → host path.
    #[serde(default)]
    pub read_dirs: BTreeMap<String, PathBuf>,
    /// Environment variables plugins may ask for, by name; values are taken from the host's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Hosts plugins may reach over HTTP (`*` for any host a manifest lists).
    #[serde(default)]
    pub outbound_hosts: Vec<String>,
    pub allow_scratch: Option<bool>,
    pub allow_memory: Option<bool>,
    pub require_sha256_pin: Option<bool>,
}

/// Values from flags or the environment (clap merges the two, flags first).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub store: Option<String>,
    pub listen: Option<String>,
    pub plugins: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub worker_id: Option<String>,
    pub hostname: Option<String>,
    pub max_tasks: Option<u32>,
    pub prefetch: Option<u32>,
    pub prefetch_wait_ms: Option<u64>,
    pub task_types: Option<Vec<String>>,
    pub labels: Vec<(String, String)>,
    pub heartbeat_interval_ms: Option<u64>,
    pub stale_threshold_ms: Option<u64>,
    pub check_interval_ms: Option<u64>,
    pub lock_ttl_seconds: Option<u64>,
    pub lock_retry_attempts: Option<u32>,
    pub lock_retry_delay_ms: Option<u64>,
    pub strategy: Option<String>,
    pub memory_sync_interval_ms: Option<u64>,
    pub memory_cache_size: Option<usize>,
    /// Serve a non-loopback address with no tokens configured (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
}

/// Most tasks a host claims ahead of its free slots by default, and at most (`capacity.prefetch`).
pub const DEFAULT_PREFETCH: u32 = 256;

pub const PREFETCH_MAX: u32 = 10_000;

/// How long a buffered task waits for a slot by default (`capacity.prefetchWaitMs`), and at most.
pub const DEFAULT_PREFETCH_WAIT_MS: u64 = 250;
pub const PREFETCH_WAIT_MAX_MS: u64 = 60_000;

/// The resolved, validated settings of one host.
#[derive(Debug, Clone)]
pub struct Settings {
    pub worker_id: String,
    pub hostname: String,
    pub store_url: String,
    pub listen: SocketAddr,
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    pub max_tasks: u32,
    /// Tasks claimed ahead into the local buffer beyond the running ones (0 = none).
    pub prefetch: u32,
    /// Longest a buffered task waits for a slot before it is given back.
    pub prefetch_wait: Duration,
    pub cpu_cores: u32,
    pub memory_mb: u64,
    /// `None`: every task type a loaded plugin serves.
    pub task_types: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    pub strategy: String,
    pub coord: CoordConfig,
    /// Tokens, principals and tenant policies.
    pub tenancy: crate::tenancy::Tenancy,
    pub trust: crate::trust::TrustSettings,
    pub policy: sentinel_runtime::HostPolicy,
    pub max_payload_bytes: usize,
    pub http: HttpSettings,
}

/// The HTTP server's limits (file section `http`), each with a default.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A request's head (request line and headers) must arrive within this; an idle keep-alive
    /// connection is closed after it too. `http.headerTimeoutMs`, default 10 s.
    pub header_timeout: Duration,
    /// A request's body must arrive within this once its handler reads it (408 otherwise).
    /// `http.bodyTimeoutMs`, default 30 s.
    pub body_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed. `http.maxConnections`,
    /// default 1024.
    pub max_connections: usize,
    /// Longest path and query (414 beyond). `http.maxUriBytes`, default 8 KiB.
    pub max_uri_bytes: usize,
    /// Total bytes of header names and values (431 beyond). `http.maxHeaderBytes`, default 16 KiB.
    pub max_header_bytes: usize,
    /// Most headers on one request (431 beyond). `http.maxHeaders`, default 64.
    pub max_headers: usize,
    /// Largest request body (413 beyond): a batch carries many payloads, each still checked
    /// against `maxPayloadBytes`. `http.maxBodyBytes`, default max(64 × maxPayloadBytes, 8 MiB).
    pub max_body_bytes: usize,
}

impl HttpSettings {
    /// The defaults, for a host whose largest payload is `max_payload_bytes`.
    pub fn defaults(max_payload_bytes: usize) -> HttpSettings {
        HttpSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_uri_bytes: 8 << 10,
            max_header_bytes: 16 << 10,
            max_headers: 64,
            max_body_bytes: max_payload_bytes.saturating_mul(64).max(8 << 20),
        }
    }
}

/// Default largest payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

impl Settings {
    /// Reads the file (if any), applies overrides, validates.
    pub fn resolve(
        o: Overrides,
        default_plugins: impl FnOnce() -> PathBuf,
    ) -> anyhow::Result<Settings> {
        let file = match &o.config_file {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let d = &file.distributed;
        let data_dir = o
            .data_dir
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".sentinel"));
        let hostname = o.hostname.or(d.hostname.clone()).unwrap_or_else(|| {
            hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into())
        });
        let worker_id = o
            .worker_id
            .or(d.worker_id.clone())
            .unwrap_or_else(|| format!("{hostname}-{}", std::process::id()));
        validate_id("workerId (WORKER_ID, --worker-id)", &worker_id)?;

        let store_url = o
            .store
            .or(file.store.clone())
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("sentinel.db").display()));
        if !["sqlite://", "postgres://", "postgresql://", "github://"]
            .iter()
            .any(|p| store_url.starts_with(p))
        {
            bail!(
                "store (--store): {store_url:?} is not a supported store URL; use sqlite://PATH, postgres://… or github://OWNER/REPO"
            );
        }
        let listen_text = o
            .listen
            .or(file.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:7070".into());
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("listen (--listen): {listen_text:?} is not an address like 127.0.0.1:7070")
        })?;

        let mut coord = CoordConfig::default();
        let l = &d.locking;
        coord.locking.ttl_seconds = o
            .lock_ttl_seconds
            .or(l.ttl_seconds)
            .unwrap_or(coord.locking.ttl_seconds);
        coord.locking.retry_attempts = o
            .lock_retry_attempts
            .or(l.retry_attempts)
            .unwrap_or(coord.locking.retry_attempts);
        coord.locking.retry_delay_ms = o
            .lock_retry_delay_ms
            .or(l.retry_delay_ms)
            .unwrap_or(coord.locking.retry_delay_ms);
        if let Some(ms) = l.cleanup_interval_ms {
            coord.locking.cleanup_interval_ms = ms;
        }
        positive(
            "distributed.locking.ttlSeconds (LOCK_TTL_SECONDS)",
            coord.locking.ttl_seconds,
        )?;

        let h = &d.heartbeat;
        let interval = o
            .heartbeat_interval_ms
            .or(h.interval_ms)
            .unwrap_or(HeartbeatConfig::default().interval_ms);
        positive(
            "distributed.heartbeat.intervalMs (HEARTBEAT_INTERVAL_MS)",
            interval,
        )?;
        let stale = o
            .stale_threshold_ms
            .or(h.stale_threshold_ms)
            .or(d.registry.stale_threshold_ms)
            .unwrap_or(4 * interval);
        if stale <= interval {
            bail!(
                "distributed.heartbeat.staleThresholdMs (STALE_WORKER_THRESHOLD_MS): {stale} must be greater than the heartbeat interval ({interval})"
            );
        }
        let check = o
            .check_interval_ms
            .or(h.check_interval_ms)
            .or(d.registry.health_check_interval_ms)
            .unwrap_or(interval);
        positive("distributed.heartbeat.checkIntervalMs", check)?;
        coord.heartbeat = HeartbeatConfig {
            interval_ms: interval,
            stale_threshold_ms: stale,
            check_interval_ms: check,
            recovery_enabled: h.recovery_enabled.unwrap_or(true),
        };
        // Health follows the heartbeat: degraded after two missed beats, unhealthy when stale.
        coord.registry.health.healthy_ms = (2 * interval) as i64;
        coord.registry.health.degraded_ms = stale as i64;
        // A lease outlives a few missed heartbeats; recovery requeues a dead worker's tasks first.
        coord.queue.lease_ms = (stale * 2).max(coord.queue.lease_ms.min(stale * 4));

        let m = &d.memory_sync;
        if let Some(ms) = o.memory_sync_interval_ms.or(m.interval_ms) {
            positive(
                "distributed.memorySync.intervalMs (MEMORY_SYNC_INTERVAL_MS)",
                ms,
            )?;
            coord.memory_sync.poll_interval_ms = ms;
        }
        if let Some(n) = o.memory_cache_size.or(m.cache_size) {
            coord.memory_sync.cache_size = n;
        }
        if let Some(cr) = &m.conflict_resolution {
            if cr != "last_write_wins" {
                bail!(
                    "distributed.memorySync.conflictResolution: {cr:?} is not supported; Sentinel resolves conflicts by last_write_wins"
                );
            }
        }

        let strategy = o
            .strategy
            .or(d.load_balancer.strategy.clone())
            .unwrap_or_else(|| "least_loaded".into());
        if !strategy.starts_with("plugin:") && StrategyKind::parse(&strategy).is_none() {
            bail!(
                "distributed.loadBalancer.strategy (LOAD_BALANCE_STRATEGY): unknown strategy {strategy:?}; use one of {} or plugin:<name>",
                StrategyKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }

        let cap = &file.capacity;
        let max_tasks = o.max_tasks.or(cap.max_concurrent_tasks).unwrap_or(10);
        if max_tasks == 0 || max_tasks > 10_000 {
            bail!(
                "capacity.maxConcurrentTasks (WORKER_MAX_TASKS, --max-tasks): {max_tasks} must be between 1 and 10000"
            );
        }
        let prefetch = o.prefetch.or(cap.prefetch).unwrap_or(DEFAULT_PREFETCH);
        if prefetch > PREFETCH_MAX {
            bail!(
                "capacity.prefetch (WORKER_PREFETCH, --prefetch): {prefetch} must be between 0 and {}",
                PREFETCH_MAX
            );
        }
        let prefetch_wait_ms = o
            .prefetch_wait_ms
            .or(cap.prefetch_wait_ms)
            .unwrap_or(DEFAULT_PREFETCH_WAIT_MS);
        if !(1..=PREFETCH_WAIT_MAX_MS).contains(&prefetch_wait_ms) {
            bail!(
                "capacity.prefetchWaitMs (WORKER_PREFETCH_WAIT_MS, --prefetch-wait-ms): {prefetch_wait_ms} must be between 1 and {PREFETCH_WAIT_MAX_MS}"
            );
        }
        let task_types = o
            .task_types
            .or(cap.supported_task_types.clone())
            .filter(|t| !t.is_empty());
        let mut labels = file.labels.clone();
        labels.extend(o.labels);

        let s = &file.sandbox;
        let mut policy = sentinel_runtime::HostPolicy {
            scratch_root: data_dir.join("scratch"),
            read_dirs: s.read_dirs.clone(),
            outbound_hosts: s.outbound_hosts.clone(),
            ..Default::default()
        };
        for name in &s.env {
            if let Ok(value) = std::env::var(name) {
                policy.env.insert(name.clone(), value);
            }
        }
        for (name, dir) in &s.read_dirs {
            if !dir.is_dir() {
                bail!(
                    "sandbox.readDirs.{name}: {} is not a directory",
                    dir.display()
                );
            }
        }
        policy.allow_scratch = s.allow_scratch.unwrap_or(false);
        policy.allow_memory = s.allow_memory.unwrap_or(false);
        policy.require_sha256_pin = s.require_sha256_pin.unwrap_or(false);

        let tenancy = crate::tenancy::config::resolve(&file.auth, &file.tenants, validate_tenant)?;
        let trust = crate::trust::config::resolve(&file.trust, &tenancy)?;
        if !listen.ip().is_loopback() && !tenancy.auth_enabled() && !o.insecure_no_auth {
            bail!(
                "listen: {listen} is reachable from other machines and no API tokens are configured, so anyone who reaches it could run code on this fleet. Create an admin token with `sentinel tokens new --tenant ops --admin` and paste the printed entry into the config file's auth.tokens (or listen on 127.0.0.1); --insecure-no-auth runs without authentication anyway"
            );
        }

        let max_payload_bytes = file.max_payload_bytes.unwrap_or(DEFAULT_MAX_PAYLOAD);
        if max_payload_bytes == 0 {
            bail!("maxPayloadBytes: must be greater than 0");
        }
        let http = resolve_http(&file.http, max_payload_bytes)?;

        Ok(Settings {
            worker_id,
            hostname,
            store_url,
            listen,
            plugins_dir: o
                .plugins
                .or(file.plugins.clone())
                .unwrap_or_else(default_plugins),
            data_dir,
            max_tasks,
            prefetch,
            prefetch_wait: Duration::from_millis(prefetch_wait_ms),
            cpu_cores: cap.cpu_cores.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(1)
            }),
            memory_mb: cap.memory_mb.unwrap_or(0),
            task_types,
            labels,
            strategy,
            coord,
            tenancy,
            trust,
            policy,
            max_payload_bytes,
            http,
        })
    }
}

fn resolve_http(h: &HttpSection, max_payload_bytes: usize) -> anyhow::Result<HttpSettings> {
    let mut http = HttpSettings::defaults(max_payload_bytes);
    let ms = |key: &str, v: Option<u64>, d: Duration| -> anyhow::Result<Duration> {
        match v {
            Some(0) => bail!("http.{key}: must be greater than 0"),
            Some(v) if v > 3_600_000 => bail!("http.{key}: {v} is more than an hour"),
            Some(v) => Ok(Duration::from_millis(v)),
            None => Ok(d),
        }
    };
    http.header_timeout = ms("headerTimeoutMs", h.header_timeout_ms, http.header_timeout)?;
    http.body_timeout = ms("bodyTimeoutMs", h.body_timeout_ms, http.body_timeout)?;
    let bounded = |key: &str, v: Option<usize>, d: usize, min: usize, max: usize| {
        let v = v.unwrap_or(d);
        if v < min || v > max {
            bail!("http.{key}: {v} must be between {min} and {max}");
        }
        Ok(v)
    };
    http.max_connections = bounded(
        "maxConnections",
        h.max_connections,
        http.max_connections,
        1,
        1 << 20,
    )?;
    http.max_uri_bytes = bounded(
        "maxUriBytes",
        h.max_uri_bytes,
        http.max_uri_bytes,
        256,
        1 << 20,
    )?;
    http.max_header_bytes = bounded(
        "maxHeaderBytes",
        h.max_header_bytes,
        http.max_header_bytes,
        1024,
        1 << 20,
    )?;
    http.max_headers = bounded("maxHeaders", h.max_headers, http.max_headers, 8, 1000)?;
    http.max_body_bytes = bounded(
        "maxBodyBytes",
        h.max_body_bytes,
        http.max_body_bytes,
        max_payload_bytes,
        usize::MAX,
    )?;
    Ok(http)
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let text = expand_env(&text);
    let parsed = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
    } else {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
    };
    parsed.with_context(|| format!("invalid config file {}", path.display()))
}

/// Seed 001 writes `"${WORKER_ID}"` in the file: substitute environment variables; an unset
/// variable becomes empty, which then fails validation naming the key.
fn expand_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + end];
                out.push_str(&std::env::var(name).unwrap_or_default());
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn positive(key: &str, value: u64) -> anyhow::Result<()> {
    if value == 0 {
        bail!("{key}: must be greater than 0");
    }
    Ok(())
}

/// Whether `id` is a valid identifier (worker ids, tenant names): 1-128 characters of
/// letters, digits, '-', '_', '.', ':'.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

/// Whether `name` may name a tenant: a valid id, and not reserved for the host's own use
/// (names starting with `__`, such as the system tenant that carries cancellation notices).
pub fn valid_tenant(name: &str) -> bool {
    valid_id(name) && !name.starts_with("__")
}

/// Validates a tenant name from the configuration, naming the key.
pub fn validate_tenant(key: &str, name: &str) -> anyhow::Result<()> {
    validate_id(key, name)?;
    if name.starts_with("__") {
        bail!("{key}: {name:?} is reserved (tenant names starting with `__` are the host's own)");
    }
    Ok(())
}

fn validate_id(key: &str, id: &str) -> anyhow::Result<()> {
    if !valid_id(id) {
        bail!("{key}: {id:?} must be 1-128 characters of letters, digits, '-', '_', '.', ':'");
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
