//! [`Live`]: the configuration currently in force, swapped whole on reload.
//! Readers take an `Arc<Config>` snapshot and keep it for the work at hand (a
//! session keeps the config it started with; a reload never changes rules under
//! a client's feet).

use std::sync::{Arc, RwLock};

use super::Config;

/// The current configuration; cheap to read, replaced atomically.
#[derive(Debug)]
pub struct Live {
    current: RwLock<Arc<Config>>,
}

impl Live {
    /// Starts with `config`.
    pub fn new(config: Config) -> Live {
        Live {
            current: RwLock::new(Arc::new(config)),
        }
    }

    /// The configuration in force now.
    pub fn get(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `config` in force for everything that starts from now on.
    pub fn replace(&self, config: Config) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}
