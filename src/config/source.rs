//! Which tern.toml a command uses, found the same way by every command
//! (`tern serve`, `tern queue`, `mailq`, `tern dkim`, `tern config check`,
//! `sendmail`): the file named with `-c`/`--config` (sendmail: `-C`), else
//! the one `$TERN_CONFIG` names, else [`SYSTEM_CONFIG`] when it exists, else
//! the embedded default ([`super::DEFAULT_TOML`]: a test instance on
//! 127.0.0.1:2525 with its data in ./tern-data).

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// The appliance's configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/tern/tern.toml";

/// The environment variable that names a configuration file.
pub const CONFIG_ENV: &str = "TERN_CONFIG";

/// Where the configuration in force comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Named on the command line.
    Given(PathBuf),
    /// Named by `$TERN_CONFIG`.
    Environment(PathBuf),
    /// [`SYSTEM_CONFIG`], which exists.
    System,
    /// No file: the embedded default.
    Embedded,
}

impl Source {
    /// The source for a command given `flag` (its `-c`), looking at the
    /// environment and the file system as the module doc says.
    pub fn find(flag: Option<&Path>) -> Source {
        let env = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty());
        Source::choose(flag, env.as_deref().map(Path::new), |p| p.exists())
    }

    /// [`Source::find`] without the process's environment and disk.
    fn choose(flag: Option<&Path>, env: Option<&Path>, exists: impl Fn(&Path) -> bool) -> Source {
        match (flag, env) {
            (Some(path), _) => Source::Given(path.to_path_buf()),
            (None, Some(path)) => Source::Environment(path.to_path_buf()),
            (None, None) if exists(Path::new(SYSTEM_CONFIG)) => Source::System,
            (None, None) => Source::Embedded,
        }
    }

    /// The file, if there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::Given(path) | Source::Environment(path) => Some(path),
            Source::System => Some(Path::new(SYSTEM_CONFIG)),
            Source::Embedded => None,
        }
    }

    /// Reads and validates the configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self.path() {
            Some(path) => Config::load(path),
            None => Ok(Config::default_config()),
        }
    }
}

/// Which one it is, for `tern config check` and errors.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Given(path) => write!(f, "{} (given with --config)", path.display()),
            Source::Environment(path) => write!(f, "{} (from {CONFIG_ENV})", path.display()),
            Source::System => write!(f, "{SYSTEM_CONFIG}"),
            Source::Embedded => write!(
                f,
                "the embedded default (no --config, no {CONFIG_ENV}, no {SYSTEM_CONFIG}), \
                 with its data in ./tern-data"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_then_environment_then_system_file_then_embedded() {
        let (flag, env) = (Path::new("a.toml"), Path::new("b.toml"));
        let yes = |_: &Path| true;
        let no = |_: &Path| false;
        assert_eq!(
            Source::choose(Some(flag), Some(env), yes),
            Source::Given(flag.into())
        );
        assert_eq!(
            Source::choose(None, Some(env), yes),
            Source::Environment(env.into())
        );
        assert_eq!(Source::choose(None, None, yes), Source::System);
        assert_eq!(Source::choose(None, None, no), Source::Embedded);
        assert_eq!(Source::System.path(), Some(Path::new(SYSTEM_CONFIG)));
        assert_eq!(Source::Embedded.path(), None);
    }
}
