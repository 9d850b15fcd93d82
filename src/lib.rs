//! tern: a mail server appliance for one owner.
//!
//! Layout (see DESIGN.md for the message flow):
//! - [`config`]: tern.toml → validated [`config::Config`], errors with file:line:col.
pub mod config;
pub mod smtp;
pub mod clock;
pub mod queue;
pub mod local;
