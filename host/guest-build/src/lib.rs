//! Builds the repository's WebAssembly guests and lays them out as plugin folders.
//!
//! This crate owns one job: turning the guest crates of this workspace (the six example
//! plugins under `plugins/` and the test guests under `tests/guests/`) into
//! `<name>.wasm` + `<name>.toml` pairs that the host runtime loads:
//!
//! ```text
//! <root>/target/guests/plugins/{echo,sha256,word-count,sleep,weighted-score,least-active}.{wasm,toml}
//! <root>/target/guests/hostile/{hostile,bad-strategy}.{wasm,toml}
//! ```
//!
//! It runs `cargo build --profile guest --target wasm32-wasip2 --target-dir
//! <root>/target/guests`, once for the executor crates and once for the strategy crates:
//! built together, Cargo's feature unification would turn on both of `sentinel-sdk`'s
//! world features and each guest would carry both worlds. Files are copied only when
//! their content changed (through a staging directory and a rename), so a directory
//! watcher sees no spurious changes and never a half-written file.
//!
//! It must never touch anything outside `<root>/target/guests`, never build for the host
//! target, and never leak the calling process's build settings (`RUSTFLAGS`,
//! `CARGO_TARGET_DIR`, `CARGO_BUILD_TARGET`, …) into the guest build.
//!
//! Tests use [`build_once`]:
//!
//! ```no_run
//! let guests = sentinel_guest_build::build_once();
//! let echo = guests.plugins_dir.join("echo.wasm");
//! assert!(echo.exists());
//! ```
//!
//! Several test processes may call it at the same time: Cargo's lock on the target
//! directory serialises the builds, and the copies are atomic renames.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

/// The Rust target guests are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The Cargo profile guests are built with (defined in the workspace `Cargo.toml`).
pub const PROFILE: &str = "guest";

/// The example plugins, laid out in [`GuestArtifacts::plugins_dir`] (crate directories
/// relative to the workspace root).
pub const EXAMPLE_CRATES: &[&str] = &[
    "plugins/echo",
    "plugins/sha256",
    "plugins/word-count",
    "plugins/sleep",
    "plugins/weighted-score",
    "plugins/least-active",
];

/// The test guests, laid out in [`GuestArtifacts::hostile_dir`] (crate directories
/// relative to the workspace root).
pub const HOSTILE_CRATES: &[&str] = &["tests/guests/hostile", "tests/guests/bad-strategy"];

/// Environment variables removed from the guest build: the caller's build settings
/// (coverage or sanitizer flags, a host `--target`, another target directory) must not
/// leak into a `wasm32-wasip2` build. Variables ending in `_RUSTFLAGS` go too.
const SCRUBBED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_BUILD_DEP_INFO_BASEDIR",
    "CARGO_PROFILE",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// Where [`build`] put the guests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestArtifacts {
    /// `<root>/target/guests/plugins`: `<name>.wasm` + `<name>.toml` for the six example
    /// plugins (`echo`, `sha256`, `word-count`, `sleep`, `weighted-score`,
    /// `least-active`).
    pub plugins_dir: PathBuf,
    /// `<root>/target/guests/hostile`: `hostile.wasm`/`.toml` and
    /// `bad-strategy.wasm`/`.toml`.
    pub hostile_dir: PathBuf,
}

impl GuestArtifacts {
    /// `plugins_dir/<name>.wasm`.
    pub fn plugin_wasm(&self, name: &str) -> PathBuf {
        self.plugins_dir.join(format!("{name}.wasm"))
    }

    /// `hostile_dir/<name>.wasm`.
    pub fn hostile_wasm(&self, name: &str) -> PathBuf {
        self.hostile_dir.join(format!("{name}.wasm"))
    }
}

/// The workspace root: two levels above this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent()
        .and_then(Path::parent)
        .expect("host/guest-build sits two levels below the workspace root")
        .to_path_buf()
}

/// Builds every guest of the workspace at `root` (if out of date) and lays them out.
///
/// Needs the `wasm32-wasip2` target: if it is missing, runs `rustup target add
/// wasm32-wasip2` once, and fails with a clear message if the build still fails.
pub fn build(root: &Path) -> Result<GuestArtifacts> {
    let guests_dir = root.join("target").join("guests");
    let examples = EXAMPLE_CRATES
        .iter()
        .map(|dir| GuestCrate::read(root, dir))
        .collect::<Result<Vec<_>>>()?;
    let hostile = HOSTILE_CRATES
        .iter()
        .map(|dir| GuestCrate::read(root, dir))
        .collect::<Result<Vec<_>>>()?;

    // One cargo invocation per world, so that feature unification never gives a guest
    // both of the SDK's world features.
    let mut by_kind: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for guest in examples.iter().chain(&hostile) {
        by_kind
            .entry(guest.kind.as_str())
            .or_default()
            .push(&guest.package);
    }
    let mut rustup_tried = false;
    for packages in by_kind.values() {
        cargo_build(root, &guests_dir, packages, &mut rustup_tried)?;
    }

    let out_dir = guests_dir.join(TARGET).join(PROFILE);
    let staging = guests_dir.join(".staging");
    let artifacts = GuestArtifacts {
        plugins_dir: guests_dir.join("plugins"),
        hostile_dir: guests_dir.join("hostile"),
    };
    for (crates, dest) in [
        (&examples, &artifacts.plugins_dir),
        (&hostile, &artifacts.hostile_dir),
    ] {
        fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
        for guest in crates.iter() {
            let wasm = out_dir.join(format!("{}.wasm", guest.package.replace('-', "_")));
            let bytes = fs::read(&wasm).with_context(|| {
                format!(
                    "reading {} (built from {})",
                    wasm.display(),
                    guest.dir.display()
                )
            })?;
            ensure!(
                is_component(&bytes),
                "{} is not a WebAssembly component",
                wasm.display()
            );
            sync_file(&bytes, &dest.join(format!("{}.wasm", guest.name)), &staging)?;
            sync_file(
                &guest.manifest,
                &dest.join(format!("{}.toml", guest.name)),
                &staging,
            )?;
        }
    }
    Ok(artifacts)
}

/// [`build`] of [`workspace_root`], once per process; panics with the build error.
/// Meant for tests.
pub fn build_once() -> &'static GuestArtifacts {
    static ARTIFACTS: OnceLock<GuestArtifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| match build(&workspace_root()) {
        Ok(artifacts) => artifacts,
        Err(e) => panic!("building the WebAssembly guests failed: {e:?}"),
    })
}

/// Whether `bytes` start with the WebAssembly magic and the component layer.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

/// One guest crate: its Cargo package, its manifest and what the manifest says.
struct GuestCrate {
    dir: PathBuf,
    package: String,
    name: String,
    kind: String,
    manifest: Vec<u8>,
}

#[derive(Deserialize)]
struct CargoToml {
    package: CargoPackage,
}

#[derive(Deserialize)]
struct CargoPackage {
    name: String,
}

/// The two keys of `manifest.toml` the layout needs; the runtime parses the rest.
#[derive(Deserialize)]
struct PluginManifest {
    name: String,
    kind: String,
}

impl GuestCrate {
    fn read(root: &Path, dir: &str) -> Result<Self> {
        let dir = root.join(dir);
        let cargo_toml = dir.join("Cargo.toml");
        let cargo: CargoToml = toml::from_str(
            &fs::read_to_string(&cargo_toml)
                .with_context(|| format!("reading {}", cargo_toml.display()))?,
        )
        .with_context(|| format!("parsing {}", cargo_toml.display()))?;
        let manifest_path = dir.join("manifest.toml");
        let manifest = fs::read(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let parsed: PluginManifest = toml::from_str(
            std::str::from_utf8(&manifest)
                .with_context(|| format!("{} is not UTF-8", manifest_path.display()))?,
        )
        .with_context(|| format!("parsing {}", manifest_path.display()))?;
        ensure!(
            !parsed.name.is_empty()
                && parsed
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{}: plugin name {:?} must be non-empty ASCII letters, digits, `-` or `_`",
            manifest_path.display(),
            parsed.name
        );
        ensure!(
            parsed.kind == "executor" || parsed.kind == "strategy",
            "{}: kind must be \"executor\" or \"strategy\", not {:?}",
            manifest_path.display(),
            parsed.kind
        );
        Ok(GuestCrate {
            dir,
            package: cargo.package.name,
            name: parsed.name,
            kind: parsed.kind,
            manifest,
        })
    }
}

fn cargo_command(root: &Path, target_dir: &Path, packages: &[&str]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--profile", PROFILE, "--target", TARGET, "--color", "never"])
        .arg("--target-dir")
        .arg(target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        if var.to_str().is_some_and(|v| v.ends_with("_RUSTFLAGS")) {
            cmd.env_remove(var);
        }
    }
    cmd
}

fn cargo_build(
    root: &Path,
    target_dir: &Path,
    packages: &[&str],
    rustup_tried: &mut bool,
) -> Result<()> {
    let run = || -> Result<Output> {
        let mut cmd = cargo_command(root, target_dir, packages);
        cmd.output()
            .with_context(|| format!("running {cmd:?} (is cargo on PATH, or CARGO set?)"))
    };
    let output = run()?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !target_missing(&stderr) {
        bail!(
            "building guests {packages:?} for {TARGET} failed ({}):\n{}",
            output.status,
            tail(&stderr, 80)
        );
    }
    if !*rustup_tried {
        *rustup_tried = true;
        // Best effort: the retry below reports the outcome.
        let _ = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status();
    }
    let output = run()?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if target_missing(&stderr) {
        bail!(
            "the Rust target {TARGET} is not installed and `rustup target add {TARGET}` did \
             not install it; install it for the toolchain in use and retry:\n{}",
            tail(&stderr, 40)
        );
    }
    bail!(
        "building guests {packages:?} for {TARGET} failed ({}):\n{}",
        output.status,
        tail(&stderr, 80)
    )
}

/// Whether cargo's stderr says the target's standard library is not installed.
fn target_missing(stderr: &str) -> bool {
    stderr.contains("target may not be installed")
        || stderr.contains("can't find crate for `core`")
        || stderr.contains("can't find crate for `std`")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Writes `bytes` to `dest` unless it already holds exactly them. Writes go through a
/// file in `staging` (same file system) and a rename, so `dest` is never half-written.
fn sync_file(bytes: &[u8], dest: &Path, staging: &Path) -> Result<bool> {
    if fs::read(dest).is_ok_and(|current| current == bytes) {
        return Ok(false);
    }
    let file_name = dest.file_name().context("destination has no file name")?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = staging.join(tmp_name);
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of the top-level exports of a component (a minimal reader of the component
    /// binary format: enough for what wit-component emits).
    fn component_exports(bytes: &[u8]) -> Vec<String> {
        struct R<'a>(&'a [u8], usize);
        impl R<'_> {
            fn byte(&mut self) -> u8 {
                let b = self.0[self.1];
                self.1 += 1;
                b
            }
            fn leb(&mut self) -> u64 {
                let (mut v, mut shift) = (0u64, 0);
                loop {
                    let b = self.byte();
                    v |= u64::from(b & 0x7f) << shift;
                    if b & 0x80 == 0 {
                        return v;
                    }
                    shift += 7;
                }
            }
            fn string(&mut self) -> String {
                let len = self.leb() as usize;
                let s = String::from_utf8(self.0[self.1..self.1 + len].to_vec()).unwrap();
                self.1 += len;
                s
            }
        }
        assert!(is_component(bytes));
        let mut r = R(bytes, 8);
        let mut names = Vec::new();
        while r.1 < bytes.len() {
            let id = r.byte();
            let size = r.leb() as usize;
            let end = r.1 + size;
            if id == 11 {
                // component export section
                for _ in 0..r.leb() {
                    let discriminant = r.byte();
                    assert!(discriminant <= 1, "unsupported export name encoding");
                    names.push(r.string());
                    if r.byte() == 0x00 {
                        r.byte(); // core sort
                    }
                    r.leb(); // index
                    if r.byte() == 0x01 {
                        // type ascription: func / instance / component / type-eq
                        match r.byte() {
                            0x01 | 0x04 | 0x05 => {
                                r.leb();
                            }
                            0x03 => {
                                if r.byte() == 0x00 {
                                    r.leb();
                                }
                            }
                            other => panic!("unsupported export type ascription {other:#x}"),
                        }
                    }
                }
                assert_eq!(r.1, end, "export section not fully read");
            }
            r.1 = end;
        }
        names
    }

    #[test]
    fn builds_and_lays_out_every_guest() {
        let root = workspace_root();
        let artifacts = build(&root).expect("guest build");
        assert_eq!(artifacts.plugins_dir, root.join("target/guests/plugins"));
        assert_eq!(artifacts.hostile_dir, root.join("target/guests/hostile"));

        let executors = ["echo", "sha256", "word-count", "sleep"];
        let strategies = ["weighted-score", "least-active"];
        let mut files = Vec::new();
        for name in executors.iter().chain(&strategies) {
            files.push((artifacts.plugins_dir.clone(), *name));
        }
        files.push((artifacts.hostile_dir.clone(), "hostile"));
        files.push((artifacts.hostile_dir.clone(), "bad-strategy"));

        let mut mtimes = Vec::new();
        for (dir, name) in &files {
            let wasm = dir.join(format!("{name}.wasm"));
            let bytes = fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
            assert_eq!(&bytes[..4], b"\0asm", "{}", wasm.display());
            assert_eq!(
                &bytes[6..8],
                &[1, 0],
                "{} is not a component",
                wasm.display()
            );

            let exports = component_exports(&bytes);
            let is_strategy = strategies.contains(name) || *name == "bad-strategy";
            let expected: &[&str] = if is_strategy {
                &["select-worker", "next-task"]
            } else {
                &["run"]
            };
            assert_eq!(exports, expected, "exports of {}", wasm.display());

            let manifest = dir.join(format!("{name}.toml"));
            let parsed: PluginManifest =
                toml::from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
            assert_eq!(parsed.name, *name);
            assert_eq!(
                parsed.kind,
                if is_strategy { "strategy" } else { "executor" }
            );

            for f in [wasm, manifest] {
                mtimes.push((f.clone(), fs::metadata(&f).unwrap().modified().unwrap()));
            }
        }

        // A second build is a no-op for the laid-out files: nothing is rewritten.
        build(&root).expect("second guest build");
        for (f, before) in mtimes {
            let after = fs::metadata(&f).unwrap().modified().unwrap();
            assert_eq!(before, after, "{} was rewritten", f.display());
        }
        assert!(std::ptr::eq(build_once(), build_once()));
    }

    #[test]
    fn detects_a_missing_target() {
        assert!(target_missing(
            "error[E0463]: can't find crate for `core`\n  = note: the `wasm32-wasip2` target may not be installed"
        ));
        assert!(!target_missing("error[E0308]: mismatched types"));
        assert!(is_component(b"\0asm\x0d\x00\x01\x00"));
        assert!(!is_component(b"\0asm\x01\x00\x00\x00"));
    }

    #[test]
    fn sync_file_writes_only_changes() {
        let dir = std::env::temp_dir().join(format!("guest-build-sync-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("a.wasm");
        assert!(sync_file(b"one", &dest, &dir).unwrap());
        assert!(!sync_file(b"one", &dest, &dir).unwrap());
        assert!(sync_file(b"two", &dest, &dir).unwrap());
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        fs::remove_dir_all(&dir).unwrap();
    }
}
