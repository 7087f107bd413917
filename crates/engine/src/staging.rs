//! Plugin files are checked and copied before they are loaded.
//!
//! `dlopen` maps the file it is given: a library truncated on disk faults (SIGBUS) when a page
//! past its end is first touched, and one overwritten in place (`cp new.so plugins/`) changes
//! under the running server, which then crashes. So the engine never loads the admin's file
//! itself. It reads it once, checks that it is a complete shared library of this platform
//! (every segment the loader maps lies within the file), and writes it to a private staging
//! directory under the SHA-256 of its contents, from where it is loaded. The admin's file may
//! then change or vanish without affecting the server; a changed library has another hash, so
//! another path, which `dlopen` (caching by path) loads as a new library.
//!
//! Writing the copies was two thirds of a start (190 MB of release plugins, 0.2 s of a CLI
//! run that computes in milliseconds), so on Unix they are kept for the next run in the user's
//! cache (`$XDG_CACHE_HOME/mittari/plugins`, else `~/.cache/mittari/plugins`; a directory only
//! its owner can write, or it is not used): a library whose copy is there, with the same hash
//! and length, is loaded from it without writing anything, and a file unchanged since it was
//! last hashed (device, inode, length, modification and change times: [`identity`]) is not
//! even read again. Cached copies are written under a
//! temporary name and renamed, so a half-written one is never seen, and never changed once
//! there: a process that has one mapped keeps it whatever another does. Copies unused for
//! [`CACHE_MAX_IDLE`] are removed (each use renews its time), and the least recently used
//! while the cache is over [`CACHE_MAX_BYTES`], by a sweep each start runs once it has loaded
//! its own; the sweep looks at a copy's time again just before removing it, so one another
//! process has just chosen is kept. `MITTARI_PLUGIN_CACHE=off`
//! turns the cache off.
//!
//! Without the cache (off, no home, or another platform) each process copies into a private
//! directory. On Unix that copy is unlinked as soon as `dlopen` has mapped it (`release`): the
//! mapping keeps the contents alive, and a process that is killed (SIGKILL, the OOM killer)
//! leaves no copies behind — a debug build's plugins take hundreds of megabytes, and test
//! suites that kill servers filled CI's disk with them. The directory itself is removed when
//! the engine is dropped; it holds a lock for its owner's lifetime, and each start removes the
//! directories whose owner is gone (and, on other platforms, the copies in them).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Staging directories are named `mittari-plugins-` and a random suffix, in the system's temporary
/// directory.
const STAGING_PREFIX: &str = "mittari-plugins-";
/// Held (locked) by the process owning the directory.
const LOCK_FILE: &str = ".owner.lock";
/// A directory is only judged this long after it was last written: a process that has just
/// created its own has not locked it yet.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(60);

/// A cached copy not used for this long is removed by the next start's sweep.
const CACHE_MAX_IDLE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The cache is trimmed to this size, least recently used copies first.
const CACHE_MAX_BYTES: u64 = 2 << 30;
/// A copy used this recently is never trimmed.
const CACHE_MIN_KEEP: Duration = Duration::from_secs(600);
/// A temporary file in the cache this old was left by a process that died while writing it.
const CACHE_TEMP_MAX_AGE: Duration = Duration::from_secs(3600);
/// Names the files that remember the hash of a plugin file as it was (see [`identity`]).
const IDENTITY_PREFIX: &str = "id-";
/// Turns the shared cache of copies off (`off`).
const CACHE_VARIABLE: &str = "MITTARI_PLUGIN_CACHE";

/// The private directory this process loads libraries from, removed on drop, and the user's
/// cache of copies, when there is one.
#[derive(Debug)]
pub(crate) struct StagingDir {
    dir: tempfile::TempDir,
    /// Locked while this process lives; the lock dies with it, however it ends.
    _lock: File,
    cache: Option<PathBuf>,
}

impl StagingDir {
    /// Creates and locks this process's staging directory, and starts removing those left by
    /// processes that no longer run.
    pub(crate) fn create() -> std::io::Result<StagingDir> {
        // In the background: after many killed runs there may be gigabytes to delete, and a
        // restart after a crash should not wait for them.
        let cache = user_cache();
        let sweeper = std::thread::Builder::new()
            .name("staging-sweep".to_owned())
            .spawn(|| {
                let removed = sweep_stale(&std::env::temp_dir());
                if removed > 0 {
                    tracing::info!(
                        directories = removed,
                        "removed plugin staging directories left by processes that ended without cleaning up"
                    );
                }
            });
        if let Err(e) = sweeper {
            tracing::debug!(error = %e, "cannot start the staging directory sweep");
        }
        let dir = tempfile::Builder::new().prefix(STAGING_PREFIX).tempdir()?;
        let lock = File::create(dir.path().join(LOCK_FILE))?;
        lock.try_lock().map_err(std::io::Error::from)?;
        Ok(StagingDir {
            dir,
            _lock: lock,
            cache,
        })
    }

    /// Trims the cache in the background. Called once this process has loaded its libraries,
    /// so the sweep never removes a copy between this process's choosing it and mapping it.
    pub(crate) fn trim_cache(&self) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let sweeper = std::thread::Builder::new()
            .name("plugin-cache-sweep".to_owned())
            .spawn(move || {
                let removed = sweep_cache(&cache, std::time::SystemTime::now());
                if removed > 0 {
                    tracing::info!(
                        copies = removed,
                        cache = %cache.display(),
                        "removed cached plugin copies unused for 30 days, or the least recently used beyond the cache's size"
                    );
                }
            });
        if let Err(e) = sweeper {
            tracing::debug!(error = %e, "cannot start the plugin cache sweep");
        }
    }

    /// Where a copy goes: the shared cache when there is one, else the private directory.
    fn copies(&self) -> (&Path, bool) {
        match &self.cache {
            Some(cache) => (cache, true),
            None => (self.dir.path(), false),
        }
    }

    #[cfg(test)]
    fn with_cache(cache: Option<PathBuf>) -> StagingDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let lock = File::create(dir.path().join(LOCK_FILE)).unwrap_or_else(|e| panic!("{e}"));
        StagingDir {
            dir,
            _lock: lock,
            cache,
        }
    }
}

/// The user's cache of library copies, created if missing (mode 0700), or `None` when it is
/// turned off, there is no home, or the directory is not one only this user can write: a
/// library another user could place there would run in this process.
#[cfg(unix)]
fn user_cache() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    if std::env::var_os(CACHE_VARIABLE).is_some_and(|v| v == "off") {
        return None;
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".cache"))
        })?;
    let dir = base.join("mittari").join("plugins");
    let usable = || -> std::io::Result<bool> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let meta = std::fs::symlink_metadata(&dir)?;
        // A file this process creates has its user: the directory must be that user's.
        let mine = tempfile::tempfile_in(&dir)?.metadata()?.uid();
        Ok(meta.is_dir() && meta.uid() == mine && meta.mode() & 0o022 == 0)
    };
    match usable() {
        Ok(true) => Some(dir),
        Ok(false) => {
            tracing::warn!(cache = %dir.display(), "the plugin cache is not a directory only this user can write; copying plugins privately instead");
            None
        }
        Err(e) => {
            tracing::debug!(cache = %dir.display(), error = %e, "no plugin cache; copying plugins privately");
            None
        }
    }
}

#[cfg(not(unix))]
fn user_cache() -> Option<PathBuf> {
    None
}

/// Removes the cached copies unused for [`CACHE_MAX_IDLE`], then the least recently used
/// while all of them take more than [`CACHE_MAX_BYTES`] (each build of the plugins has new
/// hashes), and temporary files left by writers that died; returns how many copies. Copies
/// used in the last [`CACHE_MIN_KEEP`] are kept whatever the size: a process may be about to
/// load them. A process that has a copy mapped keeps it after it is removed.
fn sweep_cache(cache: &Path, now: std::time::SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return 0;
    };
    let mut copies = Vec::new();
    for entry in entries.flatten() {
        let Some((modified, len)) = entry
            .metadata()
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
        else {
            continue;
        };
        let idle = now.duration_since(modified).unwrap_or_default();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(std::env::consts::DLL_SUFFIX) {
            copies.push((idle, len, entry.path()));
        } else if idle
            >= if name.starts_with(IDENTITY_PREFIX) {
                CACHE_MAX_IDLE
            } else {
                CACHE_TEMP_MAX_AGE
            }
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // Longest unused first.
    copies.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut total: u64 = copies.iter().map(|c| c.1).sum();
    let mut removed = 0;
    for (idle, len, path) in copies {
        let unused = idle >= CACHE_MAX_IDLE;
        let over = total > CACHE_MAX_BYTES && idle >= CACHE_MIN_KEEP;
        // Looked at again just before: another process may have chosen it since the listing
        // (its use renews the time).
        let chosen_since = std::fs::symlink_metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| {
                std::time::SystemTime::now()
                    .duration_since(modified)
                    .unwrap_or_default()
                    < CACHE_MIN_KEEP
            });
        if !(unused || over) || chosen_since {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            removed += 1;
            total -= len;
        }
    }
    removed
}

/// Removes the staging directories in `temp` whose owner has ended (their lock is free) and
/// returns how many. Directories of other users, or that cannot be judged, are left alone.
fn sweep_stale(temp: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let old_enough = entry
            .metadata()
            .ok()
            .filter(|m| m.is_dir())
            .and_then(|m| m.modified().ok())
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age >= SWEEP_MIN_AGE);
        if !old_enough {
            continue;
        }
        let owner_gone = match File::open(path.join(LOCK_FILE)) {
            // Free lock: nobody holds it. Held: a running process owns the directory.
            Ok(lock) => lock.try_lock().is_ok(),
            // No lock file in a directory this old: left by a process that died while
            // creating it, or by a version without locks.
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if owner_gone {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::debug!(directory = %path.display(), error = %e, "cannot remove a stale plugin staging directory");
                }
            }
        }
    }
    removed
}

/// Larger files are refused before being read: no plugin is a gigabyte.
const MAX_LIBRARY_BYTES: u64 = 1 << 30;

/// A library as staged for loading.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    /// The copy to load.
    pub(crate) path: PathBuf,
    /// SHA-256 of the contents, hex.
    pub(crate) sha256: String,
    /// In the user's cache, kept for later runs; else private, removed once mapped.
    cached: bool,
}

/// Checks `original` and copies it, under its content hash, into the cache (unless a copy is
/// there already) or the private directory.
pub(crate) fn stage(original: &Path, staging: &StagingDir) -> Result<Staged, String> {
    let (dir, cached) = staging.copies();
    let before =
        std::fs::metadata(original).map_err(|e| format!("cannot read the library: {e}"))?;
    let size = before.len();
    let known = identity(&before)
        .filter(|_| cached)
        .map(|name| dir.join(name));
    if let Some(staged) = known
        .as_deref()
        .and_then(|known| cached_copy(dir, known, size))
    {
        return Ok(staged);
    }
    if size > MAX_LIBRARY_BYTES {
        return Err(format!(
            "the file is {size} bytes, more than a plugin library may be ({MAX_LIBRARY_BYTES})"
        ));
    }
    let bytes = std::fs::read(original).map_err(|e| format!("cannot read the library: {e}"))?;
    check_format(&bytes)?;
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.join(copy_name(&sha256));
    if !(cached && reuse(&path, bytes.len() as u64)) {
        // Written under a temporary name and renamed, so a half-written copy is never loaded.
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| format!("cannot stage a copy in {}: {e}", dir.display()))?;
        file.write_all(&bytes)
            .map_err(|e| format!("cannot stage a copy in {}: {e}", dir.display()))?;
        // A cached copy is trusted by its length in later runs, so it is on disk before it
        // gets its name: after a crash, a file system may otherwise keep a renamed file's
        // length without its contents. A private copy is loaded at once and deleted at exit:
        // it never needs to survive a crash.
        if cached {
            file.as_file()
                .sync_all()
                .map_err(|e| format!("cannot stage a copy in {}: {e}", dir.display()))?;
        }
        file.persist(&path)
            .map_err(|e| format!("cannot stage a copy in {}: {e}", dir.display()))?;
    }
    // Remembered for the next start, unless the file changed while it was read.
    if let Some(known) = known
        && bytes.len() as u64 == size
        && std::fs::metadata(original).is_ok_and(|after| identity(&after) == identity(&before))
    {
        let remembered = tempfile::NamedTempFile::new_in(dir).and_then(|mut file| {
            file.write_all(sha256.as_bytes())?;
            file.persist(&known).map_err(std::io::Error::from)
        });
        if let Err(e) = remembered {
            tracing::debug!(cache = %dir.display(), error = %e, "cannot remember a plugin's hash");
        }
    }
    Ok(Staged {
        path,
        sha256,
        cached,
    })
}

/// Names a file's contents without reading them, as git's index and ccache's direct mode
/// do: device, inode, length, and the modification and status-change times to the
/// nanosecond. Any write or replacement changes the change time, which no user can set back,
/// so an unchanged name means unchanged contents. `None` where there are no such times.
#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    Some(format!(
        "{IDENTITY_PREFIX}{:x}-{:x}-{:x}-{}.{}-{}.{}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    ))
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata) -> Option<String> {
    None
}

/// The cached copy of a library whose file is as it was when `known` was written (`known`
/// holds its hash), if that copy is still there; its use renews the times of both.
fn cached_copy(dir: &Path, known: &Path, size: u64) -> Option<Staged> {
    let sha256 = std::fs::read_to_string(known).ok()?;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let path = dir.join(copy_name(&sha256));
    (reuse(&path, size) && renew(known)).then_some(Staged {
        path,
        sha256,
        cached: true,
    })
}

/// A copy's file name: the library's SHA-256.
fn copy_name(sha256: &str) -> String {
    format!(
        "{}{sha256}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Whether the cached copy at `path` can be loaded for a library of `size` bytes, renewing its
/// time if so (the sweep keeps what is used). A cached copy is only ever written whole under
/// its hash, so one of the right length holds those bytes; one cut short is written again.
fn reuse(path: &Path, size: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == size) && renew(path)
}

/// Sets a cache file's time to now.
fn renew(path: &Path) -> bool {
    File::open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .is_ok()
}

/// Removes the staged copy once `dlopen` has mapped it (or refused it). On Unix a mapped file
/// stays readable after its last link is gone; staging the same contents again writes a new
/// copy under the same name, which the loader, matching names first, answers with the library
/// it already holds. Windows cannot delete a loaded library, so there the copy stays until the
/// directory is removed.
pub(crate) fn release(staged: &Staged) {
    if !cfg!(unix) || staged.cached {
        return;
    }
    if let Err(e) = std::fs::remove_file(&staged.path) {
        tracing::debug!(copy = %staged.path.display(), error = %e, "cannot remove a staged plugin copy");
    }
}

/// Refuses anything but a complete shared library of this platform's format.
fn check_format(bytes: &[u8]) -> Result<(), String> {
    use object::FileKind;
    let kind = FileKind::parse(bytes).map_err(|_| {
        format!(
            "not a shared library: {} bytes that are not an ELF, Mach-O or PE file",
            bytes.len()
        )
    })?;
    let native = if cfg!(target_os = "macos") {
        matches!(
            kind,
            FileKind::MachO32 | FileKind::MachO64 | FileKind::MachOFat32 | FileKind::MachOFat64
        )
    } else if cfg!(windows) {
        matches!(kind, FileKind::Pe32 | FileKind::Pe64)
    } else {
        matches!(kind, FileKind::Elf32 | FileKind::Elf64)
    };
    if !native {
        return Err(format!(
            "not a shared library for this platform ({kind:?} file on {})",
            std::env::consts::OS
        ));
    }
    match kind {
        FileKind::Elf64 => check_elf::<object::elf::FileHeader64<object::Endianness>>(bytes),
        FileKind::Elf32 => check_elf::<object::elf::FileHeader32<object::Endianness>>(bytes),
        _ => object::File::parse(bytes)
            .map(|_| ())
            .map_err(|e| format!("damaged library: {e}")),
    }
}

/// An ELF shared object whose program headers, loadable segments and section headers all lie
/// within the file: what the loader maps, it can read.
fn check_elf<Elf>(bytes: &[u8]) -> Result<(), String>
where
    Elf: object::read::elf::FileHeader<Endian = object::Endianness>,
{
    use object::read::elf::ProgramHeader as _;
    let truncated = |what: &str, e: object::read::Error| {
        format!(
            "damaged or truncated library ({} bytes): {what}: {e}",
            bytes.len()
        )
    };
    let header = Elf::parse(bytes).map_err(|e| truncated("ELF header", e))?;
    let endian = header.endian().map_err(|e| truncated("ELF header", e))?;
    if header.e_type(endian) != object::elf::ET_DYN {
        return Err("an ELF file, but not a shared library (ET_DYN)".to_owned());
    }
    let segments = header
        .program_headers(endian, bytes)
        .map_err(|e| truncated("program headers", e))?;
    for segment in segments {
        if segment.p_type(endian) == object::elf::PT_LOAD {
            let (offset, size) = segment.file_range(endian);
            if offset
                .checked_add(size)
                .is_none_or(|end| end > bytes.len() as u64)
            {
                return Err(format!(
                    "damaged or truncated library ({} bytes): a loadable segment spans bytes {offset}..{}",
                    bytes.len(),
                    offset.saturating_add(size)
                ));
            }
        }
    }
    header
        .sections(endian, bytes)
        .map_err(|e| truncated("section headers", e))?;
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A real shared library is on every Linux system: the C library this process loaded.
    fn libc_path() -> PathBuf {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
            .map(PathBuf::from)
            .unwrap()
    }

    #[test]
    fn staging_directories_of_ended_processes_are_removed_and_live_ones_kept() {
        let temp = tempfile::tempdir().unwrap();
        let aged = |path: &Path| {
            let old = std::time::SystemTime::now() - SWEEP_MIN_AGE * 2;
            File::open(path).unwrap().set_modified(old).unwrap();
        };
        let make = |name: &str| {
            let dir = temp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("libcopy.so"), b"x").unwrap();
            dir
        };
        // Ended owner: the lock file exists, nobody holds it.
        let ended = make("mittari-plugins-ended");
        File::create(ended.join(LOCK_FILE)).unwrap();
        aged(&ended);
        // Live owner: the lock is held (by this test, as the owning process would).
        let live = make("mittari-plugins-live");
        let held = File::create(live.join(LOCK_FILE)).unwrap();
        held.lock().unwrap();
        aged(&live);
        // Just created, not locked yet: too young to judge.
        let young = make("mittari-plugins-young");
        // Not ours.
        let other = make("other-dir");
        aged(&other);
        // Left without a lock file.
        let lockless = make("mittari-plugins-lockless");
        aged(&lockless);

        assert_eq!(sweep_stale(temp.path()), 2);
        assert!(!ended.exists());
        assert!(!lockless.exists());
        for kept in [&live, &young, &other] {
            assert!(kept.exists(), "{}", kept.display());
        }
        drop(held);
    }

    #[test]
    fn complete_libraries_pass_and_damaged_files_are_named() {
        let library = std::fs::read(libc_path()).unwrap();
        assert_eq!(check_format(&library), Ok(()));
        for cut in [0, 16, 1000, library.len() / 2, library.len() - 1] {
            let error = check_format(&library[..cut]).unwrap_err();
            assert!(
                error.contains("truncated") || error.contains("not a shared library"),
                "{cut}: {error}"
            );
        }
        assert!(check_format(b"#!/bin/sh\necho hi\n").is_err());
    }

    #[test]
    fn copies_are_content_addressed() {
        let dir = StagingDir::with_cache(None);
        let staged = stage(&libc_path(), &dir).unwrap();
        assert_eq!(staged.sha256.len(), 64);
        assert!(staged.path.ends_with(format!("lib{}.so", staged.sha256)));
        assert_eq!(
            std::fs::read(&staged.path).unwrap(),
            std::fs::read(libc_path()).unwrap()
        );
        // Staging the same contents again reuses the copy.
        assert_eq!(stage(&libc_path(), &dir).unwrap().path, staged.path);
    }

    #[test]
    fn a_released_copy_is_gone_from_disk_and_still_loaded() {
        let dir = StagingDir::with_cache(None);
        let staged = stage(&libc_path(), &dir).unwrap();
        // SAFETY: the C library is already loaded in this process; this maps it once more.
        let library = unsafe { libloading::Library::new(&staged.path) }.unwrap();
        release(&staged);
        assert!(!staged.path.exists());
        // Only the owner's lock is left.
        assert_eq!(std::fs::read_dir(dir.dir.path()).unwrap().count(), 1);
        // SAFETY: getpid has this signature and no preconditions.
        let getpid = unsafe { library.get::<unsafe extern "C" fn() -> i32>(b"getpid") }.unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { getpid() } as u32, std::process::id());
        // Staged again after release, the same contents get the same name back.
        assert_eq!(stage(&libc_path(), &dir).unwrap().path, staged.path);
    }

    #[test]
    fn cached_copies_are_kept_reused_and_rewritten_when_damaged() {
        use std::os::unix::fs::MetadataExt as _;
        let cache = tempfile::tempdir().unwrap();
        let dir = StagingDir::with_cache(Some(cache.path().to_owned()));
        let staged = stage(&libc_path(), &dir).unwrap();
        assert!(staged.path.starts_with(cache.path()));
        release(&staged);
        assert!(staged.path.exists(), "a cached copy outlives its loading");
        let written = std::fs::metadata(&staged.path).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        File::open(&staged.path).unwrap().set_modified(old).unwrap();

        // Another run (another staging directory) loads the same copy, written once; its use
        // renews its time.
        let next = StagingDir::with_cache(Some(cache.path().to_owned()));
        let again = stage(&libc_path(), &next).unwrap();
        assert_eq!(again.path, staged.path);
        let reused = std::fs::metadata(&again.path).unwrap();
        assert_eq!(reused.ino(), written.ino());
        assert!(reused.modified().unwrap() > old + Duration::from_secs(1800));

        // A copy of another length (cut short) is written again, whole.
        std::fs::write(&staged.path, b"cut").unwrap();
        let mended = stage(&libc_path(), &next).unwrap();
        assert_eq!(
            std::fs::read(&mended.path).unwrap(),
            std::fs::read(libc_path()).unwrap()
        );
    }

    #[test]
    fn an_unchanged_file_is_known_by_its_identity_and_a_changed_one_read_again() {
        let cache = tempfile::tempdir().unwrap();
        let staging = StagingDir::with_cache(Some(cache.path().to_owned()));
        let plugins = tempfile::tempdir().unwrap();
        let original = plugins.path().join("libplugin.so");
        std::fs::copy(libc_path(), &original).unwrap();
        let first = stage(&original, &staging).unwrap();
        let known = cache
            .path()
            .join(identity(&std::fs::metadata(&original).unwrap()).unwrap());
        assert_eq!(std::fs::read_to_string(&known).unwrap(), first.sha256);
        let again = stage(&original, &staging).unwrap();
        assert_eq!((&again.path, &again.sha256), (&first.path, &first.sha256));

        // Other contents copied over the same file: another identity, read and hashed anew.
        // Another library this process has loaded (libm, libgcc_s…), written in place.
        let other = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5).map(PathBuf::from))
            .find(|p| {
                (p.starts_with("/usr") || p.starts_with("/lib"))
                    && p.to_string_lossy().contains(".so")
                    && *p != libc_path()
            })
            .unwrap();
        std::fs::write(&original, std::fs::read(&other).unwrap()).unwrap();
        let changed = stage(&original, &staging).unwrap();
        assert_ne!(changed.sha256, first.sha256);
        assert_eq!(
            std::fs::read(&changed.path).unwrap(),
            std::fs::read(&other).unwrap()
        );
    }

    #[test]
    fn the_cache_sweep_removes_only_long_unused_copies_and_dead_writers_files() {
        let cache = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        let file = |name: &str, age: Duration| {
            let path = cache.path().join(name);
            std::fs::write(&path, b"x").unwrap();
            File::open(&path).unwrap().set_modified(now - age).unwrap();
            path
        };
        let day = Duration::from_secs(24 * 3600);
        let unused = file("libaaaa.so", CACHE_MAX_IDLE + day);
        let used = file("libbbbb.so", CACHE_MAX_IDLE - day);
        let dead_writer = file(".tmp1234", CACHE_TEMP_MAX_AGE * 2);
        let writing = file(".tmp5678", Duration::from_secs(5));
        let forgotten = file("id-1-2-3-4.5-6.7", CACHE_MAX_IDLE + day);
        let remembered = file("id-1-2-3-4.5-6.8", CACHE_TEMP_MAX_AGE * 2);
        assert_eq!(sweep_cache(cache.path(), now), 1);
        assert!(!unused.exists());
        assert!(!dead_writer.exists());
        assert!(!forgotten.exists());
        assert!(used.exists());
        assert!(writing.exists());
        assert!(remembered.exists());
    }

    #[test]
    fn an_oversized_cache_loses_its_least_recently_used_copies_first() {
        let cache = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        let third = CACHE_MAX_BYTES / 3 + 1;
        let copy = |name: &str, age: Duration| {
            let path = cache.path().join(name);
            // Sparse: the length counts, not the blocks.
            File::create(&path).unwrap().set_len(third).unwrap();
            File::open(&path).unwrap().set_modified(now - age).unwrap();
            path
        };
        let hour = Duration::from_secs(3600);
        let oldest = copy("liba.so", 3 * hour);
        let older = copy("libb.so", 2 * hour);
        let recent = copy("libc.so", hour);
        let in_use = copy("libd.so", Duration::from_secs(1));
        // Four thirds: the oldest two go, then the cache is under its size.
        assert_eq!(sweep_cache(cache.path(), now), 2);
        assert!(!oldest.exists() && !older.exists());
        assert!(recent.exists() && in_use.exists());
        // Copies used within minutes stay even when the cache is over its size.
        let fresh = copy("libe.so", Duration::from_secs(2));
        let fresher = copy("libf.so", Duration::from_secs(1));
        assert_eq!(sweep_cache(cache.path(), now), 1);
        assert!(!recent.exists());
        assert!(in_use.exists() && fresh.exists() && fresher.exists());
    }
}
