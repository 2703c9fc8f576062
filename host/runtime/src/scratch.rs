//! Per-task scratch directories: creation, usage measurement and removal.
//!
//! A guest granted scratch can build any tree it likes under `/scratch`: millions of entries,
//! directories nested thousands deep (deeper than `PATH_MAX` allows addressing by path), sparse
//! files of any logical size. So nothing here recurses on a thread's stack or builds long
//! paths: usage is measured by an explicit work list that stops as soon as a bound is passed,
//! and removal flattens the tree through directory handles (`cap-std`), moving each
//! subdirectory's entries up into the root before removing it, so it needs two descriptors and
//! constant stack whatever the depth. A removal that fails is logged and handed to the
//! [`janitor`], which retries it; it is never fatal to the host.
//!
//! This module never decides what a task is allowed; the caller passes the quota.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// A task's scratch directory. Call [`ScratchDir::remove`]; dropping it without that hands the
/// removal to the janitor (a panic or a cancelled future must not leave the tree behind).
#[derive(Debug)]
pub struct ScratchDir {
    path: Option<PathBuf>,
}

impl ScratchDir {
    /// Creates a fresh, empty directory under `root` whose name starts with `prefix`.
    pub fn create(root: &Path, prefix: &str) -> io::Result<ScratchDir> {
        std::fs::create_dir_all(root)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(root)?;
        Ok(ScratchDir {
            path: Some(dir.keep()),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("present until removed")
    }

    /// Removes the whole tree on a blocking thread; on failure the janitor retries later.
    pub async fn remove(mut self) {
        let Some(path) = self.path.take() else { return };
        let result = tokio::task::spawn_blocking({
            let path = path.clone();
            move || remove_tree(&path)
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "removing a scratch directory failed; will retry");
                janitor().defer(path);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "scratch removal did not finish; will retry");
                janitor().defer(path);
            }
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            janitor().defer(path);
        }
    }
}

/// This process's directory under the scratch root: `host-<pid>`. Several hosts on one machine
/// share the root; each only ever removes its own trees, and those of hosts that are gone.
pub fn host_root(scratch_root: &Path) -> PathBuf {
    scratch_root.join(format!("host-{}", std::process::id()))
}

/// Hands to the janitor every `host-<pid>` directory under `scratch_root` whose process no
/// longer exists (Linux: no `/proc/<pid>`; elsewhere nothing is swept).
pub fn sweep_dead_hosts(scratch_root: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(scratch_root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("host-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(path = %entry.path().display(), "removing the scratch of a host that is gone");
            janitor().defer(entry.path());
        }
    }
}

/// What a scratch tree holds, counted up to the point where a bound was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Sum of the logical sizes of regular files (a sparse file counts at its full size).
    pub bytes: u64,
    /// Files, directories and links below the root.
    pub entries: u64,
    /// The tree could not be fully walked (too deep to address, vanished entries): treat as over.
    pub unmeasurable: bool,
}

/// Deepest directory nesting measured; deeper counts as over the files bound.
pub const MAX_DEPTH: usize = 256;

/// Measures `root`, stopping early once `max_bytes` or `max_entries` is passed. Iterative;
/// cost is bounded by `max_entries` directory entries read.
pub fn measure(root: &Path, max_bytes: u64, max_entries: u64) -> Usage {
    let mut usage = Usage::default();
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            // Each level costs the kernel a longer path walk: a tree this deep is refused
            // rather than measured.
            usage.unmeasurable = true;
            return usage;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(_) => {
                usage.unmeasurable = true;
                return usage;
            }
        };
        for entry in entries {
            let Ok(entry) = entry else {
                usage.unmeasurable = true;
                return usage;
            };
            usage.entries += 1;
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push((entry.path(), depth + 1)),
                Ok(meta) if meta.is_file() => usage.bytes = usage.bytes.saturating_add(meta.len()),
                Ok(_) => {}
                Err(_) => {
                    usage.unmeasurable = true;
                    return usage;
                }
            }
            if usage.bytes > max_bytes || usage.entries > max_entries {
                return usage;
            }
        }
    }
    usage
}

/// Removes the tree at `path` without recursion and without paths longer than one name.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let root = match Dir::open_ambient_dir(path, ambient_authority()) {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    static NONCE: OnceLock<u64> = OnceLock::new();
    let nonce = *NONCE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    let counter = AtomicU64::new(0);
    let fresh_name = || {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!(".sentinel-rm-{nonce:x}-{n}"))
    };
    loop {
        // A page at a time: entries moved up into the root show up in later pages.
        let page: Vec<(OsString, bool)> = root
            .entries()?
            .take(1024)
            .map(|e| {
                let e = e?;
                Ok((e.file_name(), e.file_type()?.is_dir()))
            })
            .collect::<io::Result<_>>()?;
        if page.is_empty() {
            break;
        }
        for (name, is_dir) in page {
            if !is_dir {
                root.remove_file(&name)?;
                continue;
            }
            let sub = root.open_dir(&name)?;
            let children: Vec<OsString> = sub
                .entries()?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            for child in children {
                move_up(&sub, &child, &root, &fresh_name)?;
            }
            drop(sub);
            root.remove_dir(&name)?;
        }
    }
    drop(root);
    std::fs::remove_dir(path)
}

/// Renames `sub/child` to a fresh name in `root`, skipping names a guest happened to use.
fn move_up(
    sub: &Dir,
    child: &OsString,
    root: &Dir,
    fresh_name: &impl Fn() -> OsString,
) -> io::Result<()> {
    let mut last = None;
    for _ in 0..16 {
        let target = fresh_name();
        if root.symlink_metadata(&target).is_ok() {
            continue;
        }
        match sub.rename(child, root, &target) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free name to move an entry to")))
}

/// Retries removals that failed, in the background, forever (with a pause between rounds).
pub struct Janitor {
    pending: Mutex<Vec<PathBuf>>,
}

/// The process's janitor; its thread starts with the first deferred removal.
pub fn janitor() -> &'static Janitor {
    static JANITOR: OnceLock<Janitor> = OnceLock::new();
    JANITOR.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("sentinel-scratch-janitor".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(Duration::from_secs(2));
                    janitor().sweep();
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the scratch janitor thread; failed removals will be retried on the next deferral");
        }
        Janitor {
            pending: Mutex::new(Vec::new()),
        }
    })
}

impl Janitor {
    /// Queues `path` for removal.
    pub fn defer(&self, path: PathBuf) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path);
    }

    /// Paths still waiting.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Tries every queued removal once; those that fail again stay queued.
    pub fn sweep(&self) {
        let paths = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failed = Vec::new();
        for path in paths {
            if let Err(e) = remove_tree(&path) {
                tracing::warn!(path = %path.display(), error = %e, "scratch removal failed again; will retry");
                failed.push(path);
            }
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_deeper_than_any_path_can_name() {
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("t");
        std::fs::create_dir(&top).unwrap();
        // 5,000 levels (10,000 path bytes): far past PATH_MAX, and removed on a 64 KiB stack,
        // where a recursive removal would not survive. Built through handles, like a guest.
        let mut dir = Dir::open_ambient_dir(&top, ambient_authority()).unwrap();
        for _ in 0..5_000 {
            dir.create_dir("d").unwrap();
            dir.write("f", b"x").unwrap();
            dir = dir.open_dir("d").unwrap();
        }
        drop(dir);
        let usage = measure(&top, u64::MAX, u64::MAX);
        assert!(usage.unmeasurable, "{usage:?}");
        // On a small stack, as the tokio blocking pool's threads would be under pressure.
        let t = top.clone();
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || remove_tree(&t).unwrap())
            .unwrap()
            .join()
            .unwrap();
        assert!(!top.exists());
    }

    #[test]
    fn measures_bytes_and_entries_and_stops_at_the_bound() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("a")).unwrap();
        std::fs::write(root.path().join("a/x"), vec![0u8; 1000]).unwrap();
        std::fs::write(root.path().join("y"), vec![0u8; 24]).unwrap();
        let usage = measure(root.path(), u64::MAX, u64::MAX);
        assert_eq!((usage.bytes, usage.entries), (1024, 3));
        assert!(measure(root.path(), 100, u64::MAX).bytes > 100);
        assert!(measure(root.path(), u64::MAX, 1).entries > 1);
    }

    #[test]
    fn symlinks_are_removed_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"k").unwrap();
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("t");
        std::fs::create_dir(&top).unwrap();
        std::os::unix::fs::symlink(outside.path(), top.join("link")).unwrap();
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn the_scratch_of_a_dead_host_is_swept_and_a_live_one_kept() {
        let root = tempfile::tempdir().unwrap();
        let mine = host_root(root.path());
        std::fs::create_dir_all(mine.join("task-1")).unwrap();
        // Pids are at most 2^22 on Linux: this one cannot be alive.
        let dead = root.path().join("host-4294967290");
        std::fs::create_dir_all(dead.join("task-2/deep")).unwrap();
        sweep_dead_hosts(root.path());
        janitor().sweep();
        assert!(mine.join("task-1").exists());
        assert!(!dead.exists());
    }

    #[test]
    fn a_missing_tree_is_already_removed() {
        let root = tempfile::tempdir().unwrap();
        remove_tree(&root.path().join("nope")).unwrap();
    }
}
