//! Tests of the login throttle: per client (IPv6 per /64), per login, the
//! clean-address exception, and the cap on checks at once.

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn throttle(client: usize, login: usize) -> Throttle {
    Throttle::new(
        Budget {
            failures: client,
            window: MINUTE,
        },
        Budget {
            failures: login,
            window: 10 * MINUTE,
        },
        2,
        1,
        Duration::from_millis(200),
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("literal")
}

#[test]
fn attempts_in_flight_count() {
    let t = throttle(3, 100);
    let a_ip = ip("192.0.2.9");
    let now = Instant::now();
    let a = t.begin(a_ip, "me", now).unwrap();
    let b = t.begin(a_ip, "me", now).unwrap();
    let c = t.begin(a_ip, "me", now).unwrap();
    assert_eq!(
        t.begin(a_ip, "me", now).unwrap_err(),
        Refusal::Client,
        "three checks already running"
    );
    drop(c); // a success frees its place
    let d = t.begin(a_ip, "me", now).unwrap();
    a.failed(now);
    b.failed(now);
    d.failed(now);
    assert!(t.begin(a_ip, "other", now).is_err());
    assert!(t.begin(a_ip, "me", now + MINUTE).is_ok());
}

#[test]
fn throttle_window() {
    let t = throttle(3, 100);
    let a = ip("192.0.2.1");
    let t0 = Instant::now();
    for i in 0..3 {
        assert!(!t.blocked(a, t0), "attempt {i}");
        t.begin(a, "me", t0).unwrap().failed(t0);
    }
    assert!(t.blocked(a, t0 + Duration::from_secs(59)));
    assert!(!t.blocked(ip("192.0.2.2"), t0));
    assert!(!t.blocked(a, t0 + Duration::from_secs(61)));
}

#[test]
fn ipv6_failures_count_per_64() {
    let t = throttle(2, 100);
    let now = Instant::now();
    t.begin(ip("2001:db8:1:2::1"), "me", now)
        .unwrap()
        .failed(now);
    t.begin(ip("2001:db8:1:2:ffff::9"), "me", now)
        .unwrap()
        .failed(now);
    assert_eq!(
        t.begin(ip("2001:db8:1:2:abcd::1"), "me", now).unwrap_err(),
        Refusal::Client,
        "another address in the same /64"
    );
    assert!(t.blocked(ip("2001:db8:1:2::77"), now));
    assert!(t.begin(ip("2001:db8:1:3::1"), "me", now).is_ok());
    // An IPv4-mapped address is that IPv4 address.
    t.begin(ip("192.0.2.5"), "me", now).unwrap().failed(now);
    t.begin(ip("::ffff:192.0.2.5"), "me", now)
        .unwrap()
        .failed(now);
    assert!(t.blocked(ip("192.0.2.5"), now));
}

#[test]
fn a_login_locks_after_its_budget_from_many_addresses() {
    let t = throttle(5, 4);
    let now = Instant::now();
    let mut locked_at = None;
    for i in 1..=4u8 {
        let attempt = t.begin(IpAddr::from([198, 51, 100, i]), "me", now).unwrap();
        if attempt.failed(now) {
            locked_at = Some(i);
        }
    }
    assert_eq!(locked_at, Some(4), "the fourth failure locks, once");
    assert!(t.login_locked("me", now));
    assert!(!t.login_locked("bob", now));
    // A client that has failed gets nothing more for this login...
    assert_eq!(
        t.begin(ip("198.51.100.1"), "me", now).unwrap_err(),
        Refusal::LoginLocked
    );
    // ...though other logins are still checked for it.
    assert!(t.begin(ip("198.51.100.1"), "bob", now).is_ok());
    // The lock expires with the window.
    assert!(t.begin(ip("198.51.100.1"), "me", now + 10 * MINUTE).is_ok());
}

#[test]
fn a_clean_address_is_still_checked_for_a_locked_login() {
    let t = throttle(5, 2);
    let now = Instant::now();
    for i in 1..=2u8 {
        t.begin(IpAddr::from([198, 51, 100, i]), "me", now)
            .unwrap()
            .failed(now);
    }
    assert!(t.login_locked("me", now));
    // The owner, from an address without failures: checked (and a right
    // password gets in: the attempt is dropped without `failed`).
    let owner = ip("203.0.113.7");
    let attempt = t
        .begin(owner, "me", now)
        .expect("a clean address is checked");
    // One check at a time: a second one from the same client waits its turn.
    assert_eq!(t.begin(owner, "me", now).unwrap_err(), Refusal::LoginLocked);
    drop(attempt);
    assert!(t.begin(owner, "me", now).is_ok());
    // A clean address that guesses wrong is no longer clean.
    let guesser = ip("203.0.113.8");
    t.begin(guesser, "me", now).unwrap().failed(now);
    assert_eq!(
        t.begin(guesser, "me", now).unwrap_err(),
        Refusal::LoginLocked
    );
}

#[test]
fn the_maps_stay_bounded() {
    let mut f: Failures<u32> = Failures::new(
        Budget {
            failures: 3,
            window: MINUTE,
        },
        10,
    );
    let now = Instant::now();
    for key in 0..1000 {
        f.record(&key, now + Duration::from_millis(key.into()));
    }
    assert!(f.failures.len() <= 10, "{}", f.failures.len());
    assert_eq!(f.recent(&999, now + MINUTE / 2), 1, "the newest is kept");
}

#[tokio::test]
async fn password_checks_at_once_are_capped() {
    // Two checks at once, one more waiting (up to 200 ms), then refusals.
    let t = Arc::new(throttle(5, 20));
    let first = t.check_permit().await.expect("first");
    let second = t.check_permit().await.expect("second");
    let waiter = {
        let t = t.clone();
        tokio::spawn(async move { t.check_permit().await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        t.check_permit().await.unwrap_err(),
        Refusal::Busy,
        "the waiting queue is full"
    );
    drop(first);
    assert_eq!(
        waiter.await.expect("joined"),
        Ok(()),
        "the waiter got a place"
    );
    // With every place taken, a waiter gives up after the wait.
    let third = t.check_permit().await.expect("the freed place");
    let started = Instant::now();
    assert_eq!(t.check_permit().await.unwrap_err(), Refusal::Busy);
    assert!(started.elapsed() >= Duration::from_millis(150));
    drop((second, third));
    assert!(t.check_permit().await.is_ok());
}
