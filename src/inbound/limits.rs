//! Connection limits (DESIGN invariant 5): how many connections in all and from
//! one client at once, with a separate budget for each listener role, so that
//! a flood on port 25 never refuses the owner on 587 or 465. IPv6 clients are
//! counted per /64, since one host usually holds a whole /64 ([`client_key`],
//! which the login throttle uses too).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::{ConnectionBudget, Role};
use crate::smtp::Reply;

/// One connection counter per listener role.
#[derive(Debug, Default)]
pub struct RoleLimits {
    mx: Arc<ConnectionLimits>,
    submission: Arc<ConnectionLimits>,
    submissions: Arc<ConnectionLimits>,
    web: Arc<ConnectionLimits>,
}

impl RoleLimits {
    /// The counter of the listeners of `role`.
    pub fn of(&self, role: Role) -> &Arc<ConnectionLimits> {
        match role {
            Role::Mx => &self.mx,
            Role::Submission => &self.submission,
            Role::Submissions => &self.submissions,
            Role::Https | Role::Http => &self.web,
        }
    }
}

/// Counts open connections.
#[derive(Debug, Default)]
pub struct ConnectionLimits {
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Held while a connection is open; gives its place back when dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    limits: Arc<ConnectionLimits>,
    key: IpAddr,
}

/// The key a client is counted under: the address, or its /64 for IPv6
/// (an IPv4-mapped IPv6 address counts as the IPv4 address).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

impl ConnectionLimits {
    /// Takes a place for a connection from `ip`, or says why not (the 421 to
    /// send before closing).
    pub fn try_acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        budget: ConnectionBudget,
    ) -> Result<ConnectionGuard, Reply> {
        let max_total = budget.connections;
        let max_per_client = budget.connections_per_ip;
        let key = client_key(ip);
        let mut counts = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= max_total {
            return Err(Reply::TOO_MANY_CONNECTIONS);
        }
        let mine = counts.per_client.entry(key).or_insert(0);
        if *mine >= max_per_client {
            return Err(Reply::TOO_MANY_CONNECTIONS_FROM_IP);
        }
        *mine += 1;
        counts.total += 1;
        Ok(ConnectionGuard {
            limits: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn total(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self.limits.state.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(connections: usize, connections_per_ip: usize) -> ConnectionBudget {
        ConnectionBudget {
            connections,
            connections_per_ip,
        }
    }

    #[test]
    fn per_client_and_total_limits() {
        let limits = Arc::new(ConnectionLimits::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let c: IpAddr = "192.0.2.2".parse().unwrap();
        let g1 = limits.try_acquire(a, b(3, 2)).unwrap();
        let _g2 = limits.try_acquire(a, b(3, 2)).unwrap();
        assert_eq!(
            limits.try_acquire(a, b(3, 2)).unwrap_err(),
            Reply::TOO_MANY_CONNECTIONS_FROM_IP
        );
        let _g3 = limits.try_acquire(c, b(3, 2)).unwrap();
        assert_eq!(
            limits.try_acquire(c, b(3, 2)).unwrap_err(),
            Reply::TOO_MANY_CONNECTIONS
        );
        drop(g1);
        assert_eq!(limits.total(), 2);
        assert!(limits.try_acquire(a, b(3, 2)).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let limits = Arc::new(ConnectionLimits::default());
        let _g = limits
            .try_acquire("2001:db8::1".parse().unwrap(), b(10, 1))
            .unwrap();
        assert!(limits
            .try_acquire("2001:db8::ffff".parse().unwrap(), b(10, 1))
            .is_err());
        assert!(limits
            .try_acquire("2001:db8:0:1::1".parse().unwrap(), b(10, 1))
            .is_ok());
    }

    #[test]
    fn each_role_has_its_own_budget() {
        let limits = RoleLimits::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let _mx = limits.of(Role::Mx).try_acquire(ip, b(1, 1)).unwrap();
        assert!(limits.of(Role::Mx).try_acquire(ip, b(1, 1)).is_err());
        let _sub = limits
            .of(Role::Submission)
            .try_acquire(ip, b(1, 1))
            .unwrap();
        let _subs = limits
            .of(Role::Submissions)
            .try_acquire(ip, b(1, 1))
            .unwrap();
        assert_eq!(limits.of(Role::Mx).total(), 1);
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_address() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), v4);
        assert_eq!(
            client_key("2001:db8::1:2:3:4".parse().unwrap()),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
    }
}
