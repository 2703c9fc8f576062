//! Host policy and the grant it yields for one plugin.
//!
//! Deny by default: a plugin gets a capability only when its manifest asks for it *and*
//! the host policy allows it. Limits are the manifest's request (or the host default),
//! capped by the host maximum. This module computes grants; it never touches a sandbox.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;

/// Resource limits of one sandbox. Every resource a guest can make the host hold is here,
/// so each has a documented default and ceiling (README, "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Limits {
    /// Linear memory, bytes (all memories of the instance together).
    pub memory_bytes: u64,
    /// CPU time spent in guest code.
    #[serde(with = "millis")]
    pub cpu: Duration,
    /// Wall-clock time for the whole call, including time the guest waits.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Output size, bytes.
    pub output_bytes: u64,
    /// Captured log, bytes.
    pub log_bytes: u64,
    /// Error message kept from a failed task, bytes; longer messages are cut (and say so).
    #[serde(default = "defaults::error_bytes")]
    pub error_bytes: u64,
    /// Host-side handles open at once: files and directories (each a host descriptor),
    /// streams, HTTP fields/requests/bodies, buckets. Each holds at most
    /// [`MAX_BYTES_PER_HANDLE`] of host memory, so this also bounds host memory per task.
    #[serde(default = "defaults::host_handles")]
    pub host_handles: u64,
    /// Bytes in the scratch directory (logical file sizes).
    #[serde(default = "defaults::scratch_bytes")]
    pub scratch_bytes: u64,
    /// Files and directories in the scratch directory.
    #[serde(default = "defaults::scratch_files")]
    pub scratch_files: u64,
    /// Shared-memory writes (set) by one task.
    #[serde(default = "defaults::memory_writes")]
    pub memory_writes: u64,
    /// Shared-memory bytes written by one task (keys and values).
    #[serde(default = "defaults::memory_write_bytes")]
    pub memory_write_bytes: u64,
}

/// The most host memory one handle can hold: an HTTP field map is capped at
/// [`HTTP_FIELDS_BYTES`], an unsent outgoing body buffers at most two chunks of
/// [`HTTP_BODY_CHUNK_BYTES`]; file, directory and bucket handles hold well under 1 KiB.
pub const MAX_BYTES_PER_HANDLE: u64 = 2 * HTTP_BODY_CHUNK_BYTES as u64;
/// Largest HTTP header/trailer map a guest may build.
pub const HTTP_FIELDS_BYTES: usize = 16 << 10;
/// Chunk of an outgoing HTTP body the host buffers before the guest must wait.
pub const HTTP_BODY_CHUNK_BYTES: usize = 64 << 10;
/// Largest `get-random-bytes` answer (the host allocates it before copying it in).
pub const RANDOM_BYTES: u64 = 1 << 20;

mod defaults {
    use super::Limits;
    pub fn error_bytes() -> u64 {
        Limits::EXECUTOR_DEFAULT.error_bytes
    }
    pub fn host_handles() -> u64 {
        Limits::EXECUTOR_DEFAULT.host_handles
    }
    pub fn scratch_bytes() -> u64 {
        Limits::EXECUTOR_DEFAULT.scratch_bytes
    }
    pub fn scratch_files() -> u64 {
        Limits::EXECUTOR_DEFAULT.scratch_files
    }
    pub fn memory_writes() -> u64 {
        Limits::EXECUTOR_DEFAULT.memory_writes
    }
    pub fn memory_write_bytes() -> u64 {
        Limits::EXECUTOR_DEFAULT.memory_write_bytes
    }
}

impl Limits {
    /// The host's defaults for executors.
    pub const EXECUTOR_DEFAULT: Limits = Limits {
        memory_bytes: 64 << 20,
        cpu: Duration::from_secs(30),
        timeout: Duration::from_secs(60),
        output_bytes: 1 << 20,
        log_bytes: 256 << 10,
        error_bytes: 16 << 10,
        host_handles: 128,
        scratch_bytes: 64 << 20,
        scratch_files: 4096,
        memory_writes: 1000,
        memory_write_bytes: 16 << 20,
    };

    /// The largest values a plugin may ask for unless the operator raises them.
    pub const EXECUTOR_MAX: Limits = Limits {
        memory_bytes: 512 << 20,
        cpu: Duration::from_secs(600),
        timeout: Duration::from_secs(3600),
        output_bytes: 16 << 20,
        log_bytes: 4 << 20,
        error_bytes: 256 << 10,
        host_handles: 1024,
        scratch_bytes: 4 << 30,
        scratch_files: 100_000,
        memory_writes: 100_000,
        memory_write_bytes: 256 << 20,
    };

    /// Limits of one strategy call: strategies answer quickly or not at all.
    pub const STRATEGY: Limits = Limits {
        memory_bytes: 64 << 20,
        cpu: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        output_bytes: 0,
        log_bytes: 16 << 10,
        error_bytes: 4 << 10,
        host_handles: 32,
        scratch_bytes: 0,
        scratch_files: 0,
        memory_writes: 0,
        memory_write_bytes: 0,
    };

    /// Larger than any real limit: the identity of [`Limits::min`].
    pub const UNBOUNDED: Limits = Limits {
        memory_bytes: u64::MAX,
        cpu: Duration::MAX,
        timeout: Duration::MAX,
        output_bytes: u64::MAX,
        log_bytes: u64::MAX,
        error_bytes: u64::MAX,
        host_handles: u64::MAX,
        scratch_bytes: u64::MAX,
        scratch_files: u64::MAX,
        memory_writes: u64::MAX,
        memory_write_bytes: u64::MAX,
    };

    /// Each limit the smaller of the two.
    pub fn min(self, other: Limits) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            cpu: self.cpu.min(other.cpu),
            timeout: self.timeout.min(other.timeout),
            output_bytes: self.output_bytes.min(other.output_bytes),
            log_bytes: self.log_bytes.min(other.log_bytes),
            error_bytes: self.error_bytes.min(other.error_bytes),
            host_handles: self.host_handles.min(other.host_handles),
            scratch_bytes: self.scratch_bytes.min(other.scratch_bytes),
            scratch_files: self.scratch_files.min(other.scratch_files),
            memory_writes: self.memory_writes.min(other.memory_writes),
            memory_write_bytes: self.memory_write_bytes.min(other.memory_write_bytes),
        }
    }

    /// The most host memory a task can make the host hold through its handles.
    pub fn host_handle_bytes(&self) -> u64 {
        self.host_handles.saturating_mul(MAX_BYTES_PER_HANDLE)
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// What the operator allows plugins on this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostPolicy {
    /// Whether plugins may have a scratch directory at all.
    pub allow_scratch: bool,
    /// Where scratch directories are created (one fresh directory per task, removed after).
    pub scratch_root: PathBuf,
    /// Named directories plugins may ask to read: name → host path.
    pub read_dirs: BTreeMap<String, PathBuf>,
    /// Environment variables plugins may ask for: name → value.
    pub env: BTreeMap<String, String>,
    /// Hosts plugins may ask to reach over HTTP; `"*"` allows any host a manifest lists.
    pub outbound_hosts: Vec<String>,
    /// Whether plugins may use tenant-scoped shared memory.
    pub allow_memory: bool,
    /// Limits for executors that do not ask for their own.
    pub default_limits: Limits,
    /// The most any executor may ask for.
    pub max_limits: Limits,
    /// Refuse plugins whose manifest does not pin the `.wasm` file's SHA-256.
    pub require_sha256_pin: bool,
}

impl Default for HostPolicy {
    /// Nothing by default: no scratch, no shared memory, no directories, environment or hosts.
    /// The operator turns each on.
    fn default() -> Self {
        HostPolicy {
            allow_scratch: false,
            scratch_root: std::env::temp_dir().join("sentinel-scratch"),
            read_dirs: BTreeMap::new(),
            env: BTreeMap::new(),
            outbound_hosts: Vec::new(),
            allow_memory: false,
            default_limits: Limits::EXECUTOR_DEFAULT,
            max_limits: Limits::EXECUTOR_MAX,
            require_sha256_pin: false,
        }
    }
}

/// An upper bound on grants, applied after manifest ∩ host policy: a tenant's sandbox ceiling.
/// `None` lists mean "whatever the grant has"; limits are maxima.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceiling {
    /// A scratch directory allowed at all.
    pub scratch: bool,
    /// Shared memory allowed at all.
    pub memory: bool,
    /// Read-only directory names allowed.
    pub read_dirs: Option<Vec<String>>,
    /// Environment variable names allowed.
    pub env: Option<Vec<String>>,
    /// Outbound hosts allowed (case-insensitive).
    pub outbound_hosts: Option<Vec<String>>,
    /// The largest limits.
    pub limits: Limits,
}

impl Ceiling {
    /// No narrowing at all.
    pub const NONE: Ceiling = Ceiling {
        scratch: true,
        memory: true,
        read_dirs: None,
        env: None,
        outbound_hosts: None,
        limits: Limits::UNBOUNDED,
    };
}

/// Exactly what one plugin gets: the intersection of its manifest and the host policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// A fresh scratch directory per task at `/scratch`.
    pub scratch: bool,
    /// Read-only directories: guest path `/<name>` → host path.
    pub read_dirs: Vec<(String, PathBuf)>,
    /// Environment variables visible to the guest.
    pub env: Vec<(String, String)>,
    /// Hosts the guest may reach over `wasi:http`; empty means no outbound HTTP.
    pub outbound_hosts: Vec<String>,
    /// Tenant-scoped shared memory.
    pub memory: bool,
    /// Effective limits.
    pub limits: Limits,
    /// Served through `wasi:config/store`.
    pub config: BTreeMap<String, String>,
}

impl Grant {
    /// What `manifest` gets under `policy`. Requests the policy refuses are left out, not errors:
    /// the plugin sees the same denial it would see for anything else it was not given.
    pub fn new(manifest: &Manifest, policy: &HostPolicy) -> Grant {
        let caps = &manifest.capabilities;
        let requested = &manifest.limits;
        let defaults = policy.default_limits;
        let asked = Limits {
            memory_bytes: requested
                .memory_mb
                .map_or(defaults.memory_bytes, |mb| mb.saturating_mul(1 << 20)),
            cpu: requested.cpu_ms.map_or(defaults.cpu, Duration::from_millis),
            timeout: requested
                .timeout_ms
                .map_or(defaults.timeout, Duration::from_millis),
            output_bytes: requested
                .output_kb
                .map_or(defaults.output_bytes, |kb| kb.saturating_mul(1 << 10)),
            log_bytes: requested
                .log_kb
                .map_or(defaults.log_bytes, |kb| kb.saturating_mul(1 << 10)),
            error_bytes: defaults.error_bytes,
            host_handles: requested.host_handles.unwrap_or(defaults.host_handles),
            scratch_bytes: requested
                .scratch_mb
                .map_or(defaults.scratch_bytes, |mb| mb.saturating_mul(1 << 20)),
            scratch_files: requested.scratch_files.unwrap_or(defaults.scratch_files),
            memory_writes: defaults.memory_writes,
            memory_write_bytes: defaults.memory_write_bytes,
        };
        let any_host = policy.outbound_hosts.iter().any(|h| h == "*");
        Grant {
            scratch: caps.scratch && policy.allow_scratch,
            read_dirs: caps
                .read_dirs
                .iter()
                .filter_map(|name| {
                    policy
                        .read_dirs
                        .get(name)
                        .map(|p| (name.clone(), p.clone()))
                })
                .collect(),
            env: caps
                .env
                .iter()
                .filter_map(|name| policy.env.get(name).map(|v| (name.clone(), v.clone())))
                .collect(),
            outbound_hosts: caps
                .outbound_hosts
                .iter()
                .filter(|h| {
                    any_host
                        || policy
                            .outbound_hosts
                            .iter()
                            .any(|p| p.eq_ignore_ascii_case(h))
                })
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            memory: caps.memory && policy.allow_memory,
            limits: asked.min(policy.max_limits),
            config: manifest.config.clone(),
        }
    }

    /// This grant narrowed by `ceiling` (e.g. a tenant's): each capability kept only if the
    /// ceiling allows it too, each limit the smaller of the two. Never widens anything.
    pub fn within(&self, ceiling: &Ceiling) -> Grant {
        let allowed = |list: &Option<Vec<String>>, item: &str| {
            list.as_ref()
                .is_none_or(|l| l.iter().any(|x| x.eq_ignore_ascii_case(item)))
        };
        Grant {
            scratch: self.scratch && ceiling.scratch,
            read_dirs: self
                .read_dirs
                .iter()
                .filter(|(name, _)| allowed(&ceiling.read_dirs, name))
                .cloned()
                .collect(),
            env: self
                .env
                .iter()
                .filter(|(name, _)| allowed(&ceiling.env, name))
                .cloned()
                .collect(),
            outbound_hosts: self
                .outbound_hosts
                .iter()
                .filter(|h| allowed(&ceiling.outbound_hosts, h))
                .cloned()
                .collect(),
            memory: self.memory && ceiling.memory,
            limits: self.limits.min(ceiling.limits),
            config: self.config.clone(),
        }
    }

    /// The grant of every strategy: nothing but fixed, small limits.
    pub fn strategy() -> Grant {
        Grant {
            scratch: false,
            read_dirs: Vec::new(),
            env: Vec::new(),
            outbound_hosts: Vec::new(),
            memory: false,
            limits: Limits::STRATEGY,
            config: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(caps: &str) -> Manifest {
        let text = format!("name = \"p\"\nversion = \"1\"\nkind = \"executor\"\n{caps}");
        Manifest::parse(&text, "p").unwrap()
    }

    #[test]
    fn nothing_is_granted_by_default() {
        let g = Grant::new(&manifest(""), &HostPolicy::default());
        assert!(!g.scratch && !g.memory);
        assert!(g.read_dirs.is_empty() && g.env.is_empty() && g.outbound_hosts.is_empty());
        assert_eq!(g.limits, Limits::EXECUTOR_DEFAULT);
    }

    #[test]
    fn a_capability_needs_both_manifest_and_policy() {
        let m = manifest(
            "[capabilities]\nenv = [\"A\", \"B\"]\nread-dirs = [\"models\", \"secrets\"]\noutbound-hosts = [\"api.example.com\", \"evil.example\"]\n",
        );
        let mut policy = HostPolicy::default();
        policy.env.insert("A".into(), "1".into());
        policy.env.insert("C".into(), "3".into());
        policy
            .read_dirs
            .insert("models".into(), "/srv/models".into());
        policy.outbound_hosts.push("API.example.com".into());
        let g = Grant::new(&m, &policy);
        assert_eq!(g.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(
            g.read_dirs,
            vec![("models".to_string(), PathBuf::from("/srv/models"))]
        );
        assert_eq!(g.outbound_hosts, vec!["api.example.com".to_string()]);
    }

    #[test]
    fn requested_limits_are_capped_by_the_host() {
        let m = manifest("[limits]\nmemory-mb = 100000\ncpu-ms = 5\n");
        let g = Grant::new(&m, &HostPolicy::default());
        assert_eq!(g.limits.memory_bytes, Limits::EXECUTOR_MAX.memory_bytes);
        assert_eq!(g.limits.cpu, Duration::from_millis(5));
    }

    #[test]
    fn the_policy_can_refuse_scratch_and_memory() {
        let m = manifest("[capabilities]\nscratch = true\nmemory = true\n");
        let policy = HostPolicy {
            allow_scratch: false,
            allow_memory: false,
            ..HostPolicy::default()
        };
        let g = Grant::new(&m, &policy);
        assert!(!g.scratch && !g.memory);
    }

    #[test]
    fn the_host_policy_allows_nothing_by_default() {
        let m = manifest("[capabilities]\nscratch = true\nmemory = true\n");
        let g = Grant::new(&m, &HostPolicy::default());
        assert!(!g.scratch && !g.memory);
    }

    fn generous() -> Grant {
        let m = manifest(
            "[capabilities]\nscratch = true\nmemory = true\nenv = [\"A\", \"B\"]\noutbound-hosts = [\"a.example\", \"b.example\"]\n[limits]\nmemory-mb = 256\ncpu-ms = 60000\n",
        );
        let mut policy = HostPolicy {
            allow_scratch: true,
            allow_memory: true,
            ..HostPolicy::default()
        };
        policy.env.insert("A".into(), "1".into());
        policy.env.insert("B".into(), "2".into());
        policy.outbound_hosts.push("*".into());
        Grant::new(&m, &policy)
    }

    #[test]
    fn a_ceiling_caps_every_capability_and_limit_of_a_generous_plugin() {
        let g = generous();
        assert!(g.scratch && g.memory && g.env.len() == 2 && g.outbound_hosts.len() == 2);
        let ceiling = Ceiling {
            scratch: false,
            memory: false,
            read_dirs: Some(vec![]),
            env: Some(vec!["B".into()]),
            outbound_hosts: Some(vec!["A.example".into()]),
            limits: Limits {
                memory_bytes: 32 << 20,
                cpu: Duration::from_secs(1),
                ..Limits::UNBOUNDED
            },
        };
        let narrowed = g.within(&ceiling);
        assert!(!narrowed.scratch && !narrowed.memory);
        assert_eq!(narrowed.env, vec![("B".to_string(), "2".to_string())]);
        assert_eq!(narrowed.outbound_hosts, vec!["a.example".to_string()]);
        assert_eq!(narrowed.limits.memory_bytes, 32 << 20);
        assert_eq!(narrowed.limits.cpu, Duration::from_secs(1));
        assert_eq!(narrowed.limits.timeout, g.limits.timeout);
    }

    #[test]
    fn a_ceiling_never_widens_a_grant() {
        let g = Grant::new(&manifest(""), &HostPolicy::default());
        assert_eq!(g.within(&Ceiling::NONE), g);
        let wide = Ceiling {
            limits: Limits::EXECUTOR_MAX,
            ..Ceiling::NONE
        };
        assert_eq!(g.within(&wide), g);
    }
}
