//! Plugin manifests: `<name>.toml` beside `<name>.wasm`.
//!
//! Parsing is strict (unknown keys are errors naming the key) because a typo in a
//! capability must never silently grant or drop something. This module only reads
//! and validates; what a plugin actually gets is decided in `policy`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a plugin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Runs tasks (world `executor`).
    Executor,
    /// Chooses workers and tasks (world `strategy`).
    Strategy,
}

impl PluginKind {
    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Executor => "executor",
            PluginKind::Strategy => "strategy",
        }
    }
}

/// A plugin manifest as written by its author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// Plugin name; must equal the file stem.
    pub name: String,
    /// The plugin's own version (informational).
    pub version: String,
    /// Executor or strategy.
    pub kind: PluginKind,
    /// Task types an executor handles (default: its name).
    #[serde(default)]
    pub task_types: Vec<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Optional pin: the lowercase hex SHA-256 of the `.wasm` file.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Capabilities requested. Everything is denied unless asked for here and allowed by policy.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Limits requested; the host policy caps each of them.
    #[serde(default)]
    pub limits: RequestedLimits,
    /// Configuration served through `wasi:config/store`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Capabilities a plugin asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Capabilities {
    /// A private scratch directory at `/scratch`, removed after the task.
    #[serde(default)]
    pub scratch: bool,
    /// Named read-only directories, visible at `/<name>`; the host policy maps names to paths.
    #[serde(default)]
    pub read_dirs: Vec<String>,
    /// Environment variable names; values come from the host policy.
    #[serde(default)]
    pub env: Vec<String>,
    /// Hosts reachable through `wasi:http` outgoing requests.
    #[serde(default)]
    pub outbound_hosts: Vec<String>,
    /// Tenant-scoped shared memory through `wasi:keyvalue`.
    #[serde(default)]
    pub memory: bool,
}

/// Limits a plugin asks for; `None` means the host default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RequestedLimits {
    /// Linear memory, MiB.
    pub memory_mb: Option<u64>,
    /// CPU time in the guest, ms.
    pub cpu_ms: Option<u64>,
    /// Wall-clock time, ms.
    pub timeout_ms: Option<u64>,
    /// Output size, KiB.
    pub output_kb: Option<u64>,
    /// Captured log (stdout, stderr, wasi:logging), KiB; the rest is dropped.
    pub log_kb: Option<u64>,
    /// Scratch directory size, MiB.
    pub scratch_mb: Option<u64>,
    /// Files and directories in the scratch directory.
    pub scratch_files: Option<u64>,
    /// Host-side handles (files, streams, HTTP objects) open at once.
    pub host_handles: Option<u64>,
}

impl Manifest {
    /// Parses and validates a manifest; `file_stem` is the name the file is stored under.
    pub fn parse(text: &str, file_stem: &str) -> Result<Manifest, String> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(format!(
                "manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
                text.len()
            ));
        }
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        manifest.validate(file_stem)?;
        Ok(manifest)
    }

    fn validate(&self, file_stem: &str) -> Result<(), String> {
        if self.name != file_stem {
            return Err(format!(
                "key `name`: is {:?} but the file is {file_stem}.toml",
                self.name
            ));
        }
        if !is_identifier(&self.name) {
            return Err(format!(
                "key `name`: {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'",
                self.name
            ));
        }
        match self.kind {
            PluginKind::Executor => {
                for t in &self.task_types {
                    if !is_identifier(t) {
                        return Err(format!("key `task-types`: invalid task type {t:?}"));
                    }
                }
            }
            PluginKind::Strategy => {
                if !self.task_types.is_empty() {
                    return Err("key `task-types`: strategies do not handle task types".into());
                }
                let c = &self.capabilities;
                if c.scratch
                    || !c.read_dirs.is_empty()
                    || !c.env.is_empty()
                    || !c.outbound_hosts.is_empty()
                    || c.memory
                {
                    return Err(
                        "key `capabilities`: strategies are pure and get no capabilities".into(),
                    );
                }
            }
        }
        if let Some(pin) = &self.sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("key `sha256`: must be 64 hex digits".into());
            }
        }
        for dir in &self.capabilities.read_dirs {
            if !is_identifier(dir) || dir == "scratch" {
                return Err(format!(
                    "key `capabilities.read-dirs`: invalid directory name {dir:?}"
                ));
            }
        }
        for var in &self.capabilities.env {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(format!(
                    "key `capabilities.env`: invalid variable name {var:?}"
                ));
            }
        }
        for host in &self.capabilities.outbound_hosts {
            if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                return Err(format!(
                    "key `capabilities.outbound-hosts`: invalid host {host:?}"
                ));
            }
        }
        self.validate_sizes()?;
        let l = &self.limits;
        for (key, value) in [
            ("limits.memory-mb", l.memory_mb),
            ("limits.cpu-ms", l.cpu_ms),
            ("limits.timeout-ms", l.timeout_ms),
            ("limits.output-kb", l.output_kb),
            ("limits.log-kb", l.log_kb),
            ("limits.scratch-mb", l.scratch_mb),
            ("limits.scratch-files", l.scratch_files),
            ("limits.host-handles", l.host_handles),
        ] {
            if value == Some(0) {
                return Err(format!("key `{key}`: must be greater than 0"));
            }
        }
        Ok(())
    }

    /// Bounds on the manifest's free-form parts: a manifest is read into every host's memory
    /// and shown by the API, so none of it may be unbounded.
    fn validate_sizes(&self) -> Result<(), String> {
        let too_long = |key: &str, max: usize| format!("key `{key}`: longer than {max} bytes");
        if self.version.is_empty() || self.version.len() > MAX_SHORT_TEXT {
            return Err(format!("key `version`: 1-{MAX_SHORT_TEXT} bytes"));
        }
        if self.description.len() > MAX_DESCRIPTION {
            return Err(too_long("description", MAX_DESCRIPTION));
        }
        let c = &self.capabilities;
        for (key, n) in [
            ("task-types", self.task_types.len()),
            ("capabilities.read-dirs", c.read_dirs.len()),
            ("capabilities.env", c.env.len()),
            ("capabilities.outbound-hosts", c.outbound_hosts.len()),
            ("config", self.config.len()),
        ] {
            if n > MAX_LIST_ENTRIES {
                return Err(format!("key `{key}`: more than {MAX_LIST_ENTRIES} entries"));
            }
        }
        for v in c.env.iter().chain(&c.outbound_hosts) {
            if v.len() > MAX_SHORT_TEXT * 4 {
                return Err(format!(
                    "value {v:?}: longer than {} bytes",
                    MAX_SHORT_TEXT * 4
                ));
            }
        }
        for (k, v) in &self.config {
            if k.is_empty() || k.len() > MAX_SHORT_TEXT * 4 {
                return Err(format!(
                    "key `config.{k}`: names are 1-{} bytes",
                    MAX_SHORT_TEXT * 4
                ));
            }
            if v.len() > MAX_CONFIG_VALUE {
                return Err(too_long(&format!("config.{k}"), MAX_CONFIG_VALUE));
            }
        }
        Ok(())
    }

    /// Task types this executor handles (its name when none are listed).
    pub fn handled_task_types(&self) -> Vec<String> {
        if self.task_types.is_empty() {
            vec![self.name.clone()]
        } else {
            self.task_types.clone()
        }
    }
}

/// Largest `.wasm` file a host reads.
pub const MAX_WASM_BYTES: u64 = 256 << 20;

/// Reads at most `max` bytes of `path`; a larger file is an error, not a truncation.
pub fn read_bounded(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "{} is larger than {max} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Reads a manifest file, bounded by [`MAX_MANIFEST_BYTES`].
pub fn read_manifest_text(path: &std::path::Path) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, MAX_MANIFEST_BYTES as u64)?)
        .map_err(|_| std::io::Error::other(format!("{} is not UTF-8", path.display())))
}

/// Largest manifest file.
pub const MAX_MANIFEST_BYTES: usize = 256 << 10;
/// Longest version string (and a quarter of the longest env name, host or config key).
const MAX_SHORT_TEXT: usize = 64;
/// Longest description.
const MAX_DESCRIPTION: usize = 4096;
/// Most entries in any list or table of a manifest.
const MAX_LIST_ENTRIES: usize = 256;
/// Longest configuration value.
const MAX_CONFIG_VALUE: usize = 64 << 10;

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = r#"
name = "sha256"
version = "0.1.0"
kind = "executor"
task-types = ["sha256"]
[capabilities]
env = ["HOME"]
[limits]
memory-mb = 16
"#;

    #[test]
    fn a_valid_manifest_parses() {
        let m = Manifest::parse(SHA, "sha256").unwrap();
        assert_eq!(m.kind, PluginKind::Executor);
        assert_eq!(m.capabilities.env, vec!["HOME".to_string()]);
        assert_eq!(m.limits.memory_mb, Some(16));
        assert!(!m.capabilities.scratch);
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let text = SHA.replace("env = [\"HOME\"]", "network = true");
        let err = Manifest::parse(&text, "sha256").unwrap_err();
        assert!(err.contains("network"), "{err}");
    }

    #[test]
    fn the_name_must_match_the_file() {
        let err = Manifest::parse(SHA, "other").unwrap_err();
        assert!(err.contains("`name`"), "{err}");
    }

    #[test]
    fn strategies_cannot_ask_for_capabilities() {
        let text =
            "name = \"s\"\nversion = \"1\"\nkind = \"strategy\"\n[capabilities]\nscratch = true\n";
        let err = Manifest::parse(text, "s").unwrap_err();
        assert!(err.contains("pure"), "{err}");
    }

    #[test]
    fn a_malformed_pin_is_rejected() {
        let text = format!("{SHA}\n").replace("kind =", "sha256 = \"abc\"\nkind =");
        let err = Manifest::parse(&text, "sha256").unwrap_err();
        assert!(err.contains("sha256"), "{err}");
    }

    #[test]
    fn zero_limits_are_rejected() {
        let text = SHA.replace("memory-mb = 16", "cpu-ms = 0");
        assert!(
            Manifest::parse(&text, "sha256")
                .unwrap_err()
                .contains("cpu-ms")
        );
    }
}

/// The manifest parser against arbitrary input: it never panics, and whatever it accepts
/// respects every bound it promises.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn check_accepted(m: &Manifest) {
        assert!(m.version.len() <= MAX_SHORT_TEXT && m.description.len() <= MAX_DESCRIPTION);
        assert!(m.task_types.len() <= MAX_LIST_ENTRIES && m.config.len() <= MAX_LIST_ENTRIES);
        for v in [m.limits.memory_mb, m.limits.cpu_ms, m.limits.scratch_files] {
            assert_ne!(v, Some(0));
        }
    }

    /// Lines a manifest could plausibly contain, including extreme and ill-typed values.
    fn line() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "name",
            "version",
            "kind",
            "task-types",
            "description",
            "sha256",
            "memory-mb",
            "cpu-ms",
            "timeout-ms",
            "output-kb",
            "log-kb",
            "scratch-mb",
            "scratch-files",
            "host-handles",
            "scratch",
            "memory",
            "env",
            "read-dirs",
            "outbound-hosts",
            "x",
        ]);
        let value = prop_oneof![
            Just("\"p\"".to_string()),
            Just("\"executor\"".to_string()),
            Just("\"strategy\"".to_string()),
            Just("true".to_string()),
            Just("0".to_string()),
            Just("-1".to_string()),
            Just("18446744073709551615".to_string()),
            Just("9223372036854775807".to_string()),
            Just("[\"a\", \"b\"]".to_string()),
            Just("[]".to_string()),
            Just("{}".to_string()),
            "\"[ -~]{0,80}\"".prop_map(|s| s),
            any::<i64>().prop_map(|n| n.to_string()),
        ];
        let header = prop::sample::select(vec![
            "[limits]",
            "[capabilities]",
            "[config]",
            "[[x]]",
            "[limits.x]",
        ]);
        prop_oneof![
            (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
            header.prop_map(str::to_string),
            "[ -~]{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Ok(m) = Manifest::parse(&text, "p") { check_accepted(&m) }
        }

        #[test]
        fn plausible_manifests_never_panic(lines in prop::collection::vec(line(), 0..16)) {
            let text = format!("name = \"p\"\nversion = \"1\"\nkind = \"executor\"\n{}", lines.join("\n"));
            if let Ok(m) = Manifest::parse(&text, "p") {
                check_accepted(&m);
                // Whatever was accepted yields a grant without overflow.
                let g = crate::policy::Grant::new(&m, &crate::policy::HostPolicy::default());
                prop_assert!(g.limits.memory_bytes <= crate::policy::Limits::EXECUTOR_MAX.memory_bytes);
                prop_assert!(g.limits.host_handle_bytes() <= 1 << 30);
            }
        }
    }
}
