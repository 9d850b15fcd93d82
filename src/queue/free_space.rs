//! The free space on the spool's filesystem, for the `[limits] free_space`
//! reserve (DESIGN invariant 5; like Postfix's queue_minfree): while less is
//! free, new mail is refused (452 4.3.1) so that what is left goes to mail
//! already accepted. `statvfs` is asked at most once per [`REFRESH`], so a
//! flood of MAIL commands costs no system calls, and a disk that has been
//! freed is noticed within a second.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a measurement is reused.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Less space is free than the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortage {
    /// Bytes available to an unprivileged user.
    pub free: u64,
    /// The reserve (`limits.free_space`).
    pub reserve: u64,
}

impl std::fmt::Display for Shortage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes free on the spool's filesystem, below the reserve of {} (limits.free_space)",
            self.free, self.reserve
        )
    }
}

/// Free space on the filesystem holding one directory, cached for a second.
#[derive(Debug)]
pub struct FreeSpace {
    dir: PathBuf,
    last: Mutex<Option<(Instant, u64)>>,
}

impl FreeSpace {
    /// Watches the filesystem of `dir`.
    pub fn new(dir: &Path) -> FreeSpace {
        FreeSpace {
            dir: dir.to_path_buf(),
            last: Mutex::new(None),
        }
    }

    /// Bytes available to unprivileged users (`f_bavail`), measured at most
    /// [`REFRESH`] ago.
    pub fn available(&self) -> io::Result<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some((when, free)) = *last {
            if now.saturating_duration_since(when) < REFRESH {
                return Ok(free);
            }
        }
        let free = available_now(&self.dir)?;
        *last = Some((now, free));
        Ok(free)
    }

    /// `Err` while less than `reserve` bytes are free; a reserve of 0 is
    /// off. A filesystem that cannot be asked is logged and counts as
    /// having room: the writes themselves still fail safely if it has not.
    pub fn check(&self, reserve: u64) -> Result<(), Shortage> {
        if reserve == 0 {
            return Ok(());
        }
        match self.available() {
            Ok(free) if free < reserve => Err(Shortage { free, reserve }),
            Ok(_) => Ok(()),
            Err(e) => {
                log::warn!("cannot measure free space of {}: {e}", self.dir.display());
                Ok(())
            }
        }
    }
}

/// `statvfs(2)` of `dir`: available blocks times the fragment size.
pub fn available_now(dir: &Path) -> io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let blocks = u64::from(stat.blocks_available());
    #[allow(clippy::useless_conversion)]
    let fragment = u64::from(stat.fragment_size());
    Ok(blocks.saturating_mul(fragment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_caches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let space = FreeSpace::new(dir.path());
        let free = space.available().expect("statvfs");
        assert!(free > 0);
        assert_eq!(space.check(0), Ok(()));
        assert_eq!(space.check(1), Ok(()));
        assert_eq!(
            space.check(u64::MAX),
            Err(Shortage {
                free,
                reserve: u64::MAX
            })
        );
        assert!(FreeSpace::new(Path::new("/nonexistent/x")).check(1).is_ok());
    }
}
