//! Test doubles for the outside world that a user's machine does not run
//! itself: a DNS server and a remote SMTP server, both real network servers on
//! loopback.

pub mod dns;
pub mod postfix;
pub mod sink;
