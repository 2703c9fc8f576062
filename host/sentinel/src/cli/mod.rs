//! Command-line interface: `dev` and `worker` run a host; every other command is an operator
//! command talking to a host's HTTP API. Parsing only: the work is in `host.rs` and `ops.rs`.

mod host;
mod ops;
mod signing;
mod table;
mod tokens;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Sentinel: distributed task execution with every task in a WebAssembly sandbox.
#[derive(Debug, Parser)]
#[command(name = "sentinel", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Host to talk to (operator commands).
    #[arg(
        long,
        global = true,
        env = "SENTINEL_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    pub server: String,
    /// API token (when the host has tenants configured).
    #[arg(long, global = true, env = "SENTINEL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Act on this tenant (admin tokens only; sent as `X-Sentinel-Tenant`).
    #[arg(long, global = true, env = "SENTINEL_AS_TENANT", value_name = "TENANT")]
    pub as_tenant: Option<String>,
    /// Output of operator commands.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Log format of host commands: auto (JSON unless on a terminal), json or text.
    #[arg(long, global = true, default_value = "auto")]
    pub log_format: String,
}

/// How operator commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Single-node host on the embedded store with the repository's example plugins.
    Dev(HostArgs),
    /// A worker host against a shared store.
    Worker(HostArgs),
    /// Submit a task (or many from a JSON-lines file).
    Submit(SubmitArgs),
    /// One task.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// List tasks.
    Tasks {
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// Registered workers.
    Workers {
        #[command(subcommand)]
        command: WorkersCommand,
    },
    /// Distributed locks.
    Locks {
        #[command(subcommand)]
        command: LocksCommand,
    },
    /// Shared memory of your tenant.
    Memory {
        #[command(subcommand)]
        command: MemoryCommand,
    },
    /// Fleet health and load.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// The dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Plugins of the host, or check a plugin file locally.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// API tokens (minted locally; the host keeps only their SHA-256).
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Mint a token: prints it once, and the configuration entry (its SHA-256) to paste into
    /// the host's `auth.tokens`.
    New {
        /// The tenant it acts on (an admin's home tenant).
        #[arg(long, value_name = "NAME")]
        tenant: String,
        /// An operator token: cluster changes and any tenant.
        #[arg(long)]
        admin: bool,
        /// A label for audit logs (default: TENANT-ROLE).
        #[arg(long)]
        name: Option<String>,
    },
}

/// Host settings; each also reads the seed's environment variable. Flags win over the
/// environment, which wins over the config file.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// Configuration file (seed 001 keys; JSON or TOML).
    #[arg(long, env = "SENTINEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Store URL: sqlite://PATH, postgres://USER@HOST/DB[?schema=NAME] or github://OWNER/REPO
    /// (token from GITHUB_TOKEN).
    #[arg(long, env = "SENTINEL_STORE")]
    pub store: Option<String>,
    /// HTTP listen address.
    #[arg(long, env = "SENTINEL_LISTEN")]
    pub listen: Option<String>,
    /// Plugin folder (default: `dev` the repository's example plugins, built if missing;
    /// `worker` ./plugins).
    #[arg(long, env = "SENTINEL_PLUGINS")]
    pub plugins: Option<PathBuf>,
    /// Data directory (embedded store, scratch, component cache).
    #[arg(long, env = "SENTINEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,
    #[arg(long, env = "WORKER_HOSTNAME")]
    pub hostname: Option<String>,
    /// Tasks run at once.
    #[arg(long, env = "WORKER_MAX_TASKS")]
    pub max_tasks: Option<u32>,
    /// Most tasks claimed ahead into a local buffer beyond the running ones (default 256; the
    /// host claims about 50 ms of work ahead, at least --max-tasks; 0 claims only for free slots).
    #[arg(long, env = "WORKER_PREFETCH")]
    pub prefetch: Option<u32>,
    /// Longest a buffered task waits for a slot before it is given back (ms, default 250).
    #[arg(long, env = "WORKER_PREFETCH_WAIT_MS")]
    pub prefetch_wait_ms: Option<u64>,
    /// Task types this worker takes (comma-separated; default: all its plugins serve).
    #[arg(long, env = "WORKER_TASK_TYPES", value_delimiter = ',')]
    pub task_types: Option<Vec<String>>,
    /// Labels, e.g. region=eu-west (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    #[arg(long, env = "STALE_WORKER_THRESHOLD_MS")]
    pub stale_threshold_ms: Option<u64>,
    /// How often the elected maintenance worker checks for stale workers and expired leases.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL_MS")]
    pub check_interval_ms: Option<u64>,
    #[arg(long, env = "LOCK_TTL_SECONDS")]
    pub lock_ttl_seconds: Option<u64>,
    #[arg(long, env = "LOCK_RETRY_ATTEMPTS")]
    pub lock_retry_attempts: Option<u32>,
    #[arg(long, env = "LOCK_RETRY_DELAY_MS")]
    pub lock_retry_delay_ms: Option<u64>,
    /// round_robin, least_loaded, capacity_based, affinity, capability_match, random, weighted,
    /// adaptive, or plugin:<name>.
    #[arg(long, env = "LOAD_BALANCE_STRATEGY")]
    pub strategy: Option<String>,
    #[arg(long, env = "MEMORY_SYNC_INTERVAL_MS")]
    pub memory_sync_interval_ms: Option<u64>,
    #[arg(long, env = "MEMORY_CACHE_SIZE")]
    pub memory_cache_size: Option<usize>,
    /// Serve a non-loopback address without API tokens (anyone who reaches it may run code).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Seconds running tasks get to finish on SIGTERM/SIGINT.
    #[arg(long, env = "SENTINEL_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: labels are key=value"))
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Task type.
    #[arg(long = "type", short = 't', required_unless_present = "file")]
    pub task_type: Option<String>,
    /// Payload: JSON, or @FILE to read it from a file.
    #[arg(long, short = 'p', default_value = "null")]
    pub payload: String,
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    #[arg(long)]
    pub retries: Option<u32>,
    /// Wait for the task (or every task of `--file`) to finish and print the result.
    #[arg(long)]
    pub wait: bool,
    /// With `--wait`: give up after this long (e.g. `30s`, `5m`), exiting with status 4.
    #[arg(long, requires = "wait", value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// JSON-lines file, one task object per line ({"type":..,"payload":..}). Every line is
    /// checked (locally, then by the host without storing) before any task is stored.
    #[arg(long, conflicts_with = "task_type")]
    pub file: Option<PathBuf>,
}

/// Paging of list commands.
#[derive(Debug, Clone, Default, Args)]
pub struct PageArgs {
    /// Items per page (1-1000; the host's default is 100).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue after this cursor (a previous page's `next_cursor`).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Order: tasks are newest first (`desc`) by default, other lists by name (`asc`).
    #[arg(long, value_parser = ["asc", "desc"])]
    pub order: Option<String>,
    /// Follow the cursors and print every page.
    #[arg(long, conflicts_with = "cursor")]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Show a task.
    Get { id: String },
    /// Cancel a task.
    Cancel { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        task_type: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// List workers.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        health: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum LocksCommand {
    /// List locks.
    List {
        #[arg(long)]
        worker: Option<String>,
        #[arg(long)]
        include_expired: bool,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    Get {
        namespace: String,
        key: String,
    },
    /// Set a JSON value.
    Set {
        namespace: String,
        key: String,
        value: String,
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    List {
        namespace: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        page: PageArgs,
    },
    Delete {
        namespace: String,
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    Health,
    Load,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    Retry {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Plugins of the host.
    List,
    /// Validate a plugin locally: `FILE` is `<name>.wasm` (its `<name>.toml` beside it) or the manifest.
    Check { file: PathBuf },
    /// Create an ed25519 signing key: `OUT` (PKCS#8 PEM, mode 0600) and `OUT.pub`.
    Keygen {
        #[arg(long, default_value = "sentinel-plugins.key")]
        out: PathBuf,
    },
    /// Sign `<name>.wasm` and its `<name>.toml`, writing `<name>.sig` beside them.
    Sign {
        /// The private key file from `sentinel plugins keygen`.
        #[arg(long)]
        key: PathBuf,
        file: PathBuf,
    },
    /// Check `<name>.sig` against the plugin and a public key (exit code 1 if it does not hold).
    Verify {
        /// `ed25519:<base64>`, or a file holding it (`OUT.pub` from keygen).
        #[arg(long)]
        pubkey: String,
        file: PathBuf,
    },
}

/// Runs a parsed command; the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Dev(args) => host::run(args, true, &cli.log_format).await,
        Command::Worker(args) => host::run(args, false, &cli.log_format).await,
        Command::Tokens {
            command:
                TokensCommand::New {
                    tenant,
                    admin,
                    name,
                },
        } => tokens::new(&tenant, admin, name.as_deref(), cli.output),
        Command::Plugins {
            command: PluginsCommand::Keygen { out },
        } => signing::keygen(&out, cli.output),
        Command::Plugins {
            command: PluginsCommand::Sign { key, file },
        } => signing::sign(&key, &file, cli.output),
        Command::Plugins {
            command: PluginsCommand::Verify { pubkey, file },
        } => signing::verify(&pubkey, &file, cli.output),
        other => {
            let client = crate::client::Client::new(
                &cli.server,
                cli.token.as_deref(),
                cli.as_tenant.as_deref(),
            )?;
            ops::run(other, &client, cli.output).await
        }
    }
}
