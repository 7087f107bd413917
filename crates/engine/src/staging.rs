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
//! On Unix the copy is unlinked as soon as `dlopen` has mapped it (`release`): the mapping
//! keeps the contents alive, and a process that is killed (SIGKILL, the OOM killer) leaves no
//! copies behind — a debug build's plugins take hundreds of megabytes, and test suites that kill
//! servers filled CI's disk with them. The directory itself is removed when the engine is
//! dropped; it holds a lock for its owner's lifetime, and each start removes the directories
//! whose owner is gone (and, on other platforms, the copies in them).

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

/// The private directory this process loads libraries from, removed on drop.
#[derive(Debug)]
pub(crate) struct StagingDir {
    dir: tempfile::TempDir,
    /// Locked while this process lives; the lock dies with it, however it ends.
    _lock: File,
}

impl StagingDir {
    /// Creates and locks this process's staging directory, and starts removing those left by
    /// processes that no longer run.
    pub(crate) fn create() -> std::io::Result<StagingDir> {
        // In the background: after many killed runs there may be gigabytes to delete, and a
        // restart after a crash should not wait for them.
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
        Ok(StagingDir { dir, _lock: lock })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
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
    /// The private copy to load.
    pub(crate) path: PathBuf,
    /// SHA-256 of the contents, hex.
    pub(crate) sha256: String,
}

/// Checks `original` and copies it into `dir` under its content hash.
pub(crate) fn stage(original: &Path, dir: &Path) -> Result<Staged, String> {
    let size = std::fs::metadata(original)
        .map_err(|e| format!("cannot read the library: {e}"))?
        .len();
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
    let name = format!(
        "{}{sha256}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let path = dir.join(name);
    if !path.exists() {
        // Written under a temporary name and renamed, so a half-written copy is never loaded.
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| format!("cannot stage a copy in {}: {e}", dir.display()))?;
        // No fsync: the copy is loaded from the page cache at once and deleted at exit; it
        // never needs to survive a crash.
        file.write_all(&bytes)
            .map_err(|e| format!("cannot stage a copy in {}: {e}", dir.display()))?;
        file.persist(&path)
            .map_err(|e| format!("cannot stage a copy in {}: {e}", dir.display()))?;
    }
    Ok(Staged { path, sha256 })
}

/// Removes the staged copy once `dlopen` has mapped it (or refused it). On Unix a mapped file
/// stays readable after its last link is gone; staging the same contents again writes a new
/// copy under the same name, which the loader, matching names first, answers with the library
/// it already holds. Windows cannot delete a loaded library, so there the copy stays until the
/// directory is removed.
pub(crate) fn release(staged: &Staged) {
    if !cfg!(unix) {
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
        let dir = tempfile::tempdir().unwrap();
        let staged = stage(&libc_path(), dir.path()).unwrap();
        assert_eq!(staged.sha256.len(), 64);
        assert!(staged.path.ends_with(format!("lib{}.so", staged.sha256)));
        assert_eq!(
            std::fs::read(&staged.path).unwrap(),
            std::fs::read(libc_path()).unwrap()
        );
        // Staging the same contents again reuses the copy.
        assert_eq!(stage(&libc_path(), dir.path()).unwrap().path, staged.path);
    }

    #[test]
    fn a_released_copy_is_gone_from_disk_and_still_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let staged = stage(&libc_path(), dir.path()).unwrap();
        // SAFETY: the C library is already loaded in this process; this maps it once more.
        let library = unsafe { libloading::Library::new(&staged.path) }.unwrap();
        release(&staged);
        assert!(!staged.path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // SAFETY: getpid has this signature and no preconditions.
        let getpid = unsafe { library.get::<unsafe extern "C" fn() -> i32>(b"getpid") }.unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { getpid() } as u32, std::process::id());
        // Staged again after release, the same contents get the same name back.
        assert_eq!(stage(&libc_path(), dir.path()).unwrap().path, staged.path);
    }
}
