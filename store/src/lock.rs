//! [`DirLock`]: the exclusive lock one process holds on a data directory while it serves it, so a second
//! `weft up` over the same directory is refused (naming the holder's pid) instead of running beside the
//! first. Owns the lock file (`weft.lock`, the holder's pid) and nothing else in the directory; readers
//! that only open the database (`weft jobs list`, `weft trace`) do not take it.
//!
//! The lock is the operating system's advisory file lock (`flock` on Unix, `LockFileEx` on Windows, via
//! `File::try_lock`): it is released when the holder exits, however it exits, so a crashed host leaves no
//! stale lock behind — only the file, whose pid is then ignored.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// The lock file's name inside a data directory.
pub const LOCK_FILE: &str = "weft.lock";

/// A held lock on a data directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (which must exist) for this process, or says who holds it.
    pub fn acquire(dir: &Path) -> std::io::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // At most a pid's worth: the file is ours, but bound the read anyway.
                let _ = (&mut file).take(32).read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process (pid not yet written)".to_owned(),
                    pid => format!("another weft process (pid {pid})"),
                };
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!(
                        "the data directory {} is in use by {holder}: stop it first, or give this one \
                         another data directory; beside a running `weft up`, use `weft exec --server …`",
                        dir.display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{}", std::process::id())?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
