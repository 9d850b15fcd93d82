//! Idle SMTP client connections, kept a few seconds after a message went so
//! that the next message to the same server skips the connect, greeting,
//! EHLO, TLS handshake and login (issue 3: connection reuse). A connection is
//! filed under everything that made it what it is (address, host name, TLS
//! rule, login), so a message only ever gets a connection it could have made
//! itself. The attempt that takes one sends RSET first and connects anew if
//! the server no longer answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::client::Connection;
use super::plan::Tls;

/// How long an idle connection is kept (Postfix keeps them 2 s; servers
/// must wait at least 5 minutes for a command, RFC 5321 §4.5.3.2.7).
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages sent over one connection before it is closed.
const MAX_MESSAGES: u32 = 100;
/// Idle connections kept for one key.
const MAX_PER_KEY: usize = 4;
/// Idle connections kept in all.
const MAX_IDLE: usize = 64;

/// What a connection was made for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub addr: SocketAddr,
    pub host: String,
    pub tls: Tls,
    /// Made without TLS after an opportunistic handshake failed.
    pub plaintext_fallback: bool,
    /// The user we logged in as (smarthost).
    pub login: Option<String>,
}

struct Idle {
    conn: Connection,
    since: Instant,
    /// Messages it has carried.
    used: u32,
}

/// The idle connections.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

impl Pool {
    /// A pool whose expired connections are closed by a background task
    /// (when there is a runtime; the task ends with the pool).
    pub fn start() -> Arc<Pool> {
        let pool = Arc::new(Pool::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    /// An idle connection for `key` that has not expired, with the number of
    /// messages it carried.
    pub fn take(&self, key: &Key) -> Option<(Connection, u32)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        let found = loop {
            let Some(entry) = list.pop() else { break None };
            if entry.since.elapsed() < IDLE_TIMEOUT {
                break Some((entry.conn, entry.used));
            }
            // Expired: dropped (closing the socket) rather than kept.
        };
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Keeps `conn` (which carried `used` messages) for the next message to
    /// `key`; gives it back when it should be closed instead.
    pub fn put(&self, key: Key, conn: Connection, used: u32) -> Option<Connection> {
        if used >= MAX_MESSAGES {
            return Some(conn);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = idle.values().map(Vec::len).sum();
        let here = idle.get(&key).map_or(0, Vec::len);
        if here >= MAX_PER_KEY || total >= MAX_IDLE {
            return Some(conn);
        }
        idle.entry(key).or_default().push(Idle {
            conn,
            since: Instant::now(),
            used,
        });
        None
    }

    /// Removes and returns the connections idle for too long.
    fn expired(&self) -> Vec<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = Vec::new();
        for list in idle.values_mut() {
            let (old, fresh): (Vec<Idle>, Vec<Idle>) = list
                .drain(..)
                .partition(|e| e.since.elapsed() >= IDLE_TIMEOUT);
            *list = fresh;
            gone.extend(old.into_iter().map(|e| e.conn));
        }
        idle.retain(|_, list| !list.is_empty());
        gone
    }

    /// Idle connections now (for tests).
    pub fn len(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }

    /// No idle connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Says QUIT on the connections that stayed idle too long, until the pool is
/// gone.
async fn sweep(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let expired = pool.expired();
        drop(pool);
        for conn in expired {
            tokio::spawn(conn.quit());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to a listener on loopback that greets and then idles.
    async fn connection() -> Connection {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"220 idle.test\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let timeout = Duration::from_secs(5);
        Connection::connect(addr, timeout, timeout).await.unwrap().0
    }

    fn key(host: &str, login: Option<&str>) -> Key {
        Key {
            addr: "127.0.0.1:25".parse().unwrap(),
            host: host.into(),
            tls: Tls::Opportunistic,
            plaintext_fallback: false,
            login: login.map(String::from),
        }
    }

    #[tokio::test]
    async fn a_connection_is_only_found_under_the_key_it_was_made_for() {
        let pool = Pool::default();
        assert!(pool
            .put(key("a.test", None), connection().await, 1)
            .is_none());
        assert!(pool.take(&key("b.test", None)).is_none());
        assert!(pool.take(&key("a.test", Some("me"))).is_none());
        let (_, used) = pool.take(&key("a.test", None)).expect("kept");
        assert_eq!(used, 1);
        assert!(pool.is_empty());
    }

    #[tokio::test]
    async fn limits_per_key_and_per_connection_are_kept() {
        let pool = Pool::default();
        for _ in 0..MAX_PER_KEY {
            assert!(pool
                .put(key("a.test", None), connection().await, 1)
                .is_none());
        }
        assert!(pool
            .put(key("a.test", None), connection().await, 1)
            .is_some());
        assert!(pool
            .put(key("b.test", None), connection().await, MAX_MESSAGES)
            .is_some());
        assert_eq!(pool.len(), MAX_PER_KEY);
    }
}
