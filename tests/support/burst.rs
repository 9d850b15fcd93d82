//! The crash tests' workload and bookkeeping: client threads sending
//! messages with unique tokens to whichever server process is current, a
//! record of what each client heard, and the final audit of the Maildirs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::harness::strip_trace;
use crate::support::mailer::{Mailer, Outcome};

/// Where clients should connect: the generation counts server processes
/// (0 = first start), `None` while the server is down.
#[derive(Debug, Default)]
pub struct Target {
    state: Mutex<(u64, Option<SocketAddr>)>,
    changed: Condvar,
}

impl Target {
    /// The server of generation `generation` listens on `addr`.
    pub fn publish(&self, generation: u64, addr: SocketAddr) {
        *self.state.lock().unwrap() = (generation, Some(addr));
        self.changed.notify_all();
    }

    /// The server is going down.
    pub fn withdraw(&self) {
        self.state.lock().unwrap().1 = None;
    }

    /// The current server; waits (bounded) while there is none.
    pub fn current(&self) -> (u64, SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut state = self.state.lock().unwrap();
        loop {
            if let (g, Some(addr)) = *state {
                return (g, addr);
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("no server came back within 60 s");
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
    }
}

/// One message a client tried to send.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub token: String,
    /// Local users it was addressed to.
    pub users: Vec<String>,
    /// The server generation it was sent to.
    pub generation: u64,
    pub outcome: Outcome,
}

/// What the clients send: who gets each message, and how big it is.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    /// Users every message also goes to (besides `me`, and `bob` for one in
    /// ten), to make delivery outweigh acceptance: each recipient is its own
    /// Maildir file, fsync'd.
    pub fan_out: Vec<String>,
    /// About one message in this many is over 1 MiB (spilled to a file while
    /// it arrives); 0 for none.
    pub big_every: u64,
}

impl Workload {
    /// Local users message `token` goes to.
    pub fn users_for(&self, token: &str) -> Vec<String> {
        let mut users = vec!["me".to_string()];
        if hash(token) % 10 == 0 {
            users.push("bob".into());
        }
        users.extend(self.fan_out.iter().cloned());
        users
    }

    /// Every user that may receive something.
    pub fn all_users(&self) -> Vec<String> {
        let mut users = vec!["me".to_string(), "bob".to_string()];
        users.extend(self.fan_out.iter().cloned());
        users
    }

    /// `[[user]]` tables for the fan-out users.
    pub fn config(&self) -> String {
        self.fan_out
            .iter()
            .map(|u| format!("[[user]]\nname = \"{u}\"\n"))
            .collect()
    }

    /// The message for `token`, deterministic so the audit can rebuild it:
    /// a few hundred bytes to a few KiB, with lines starting with dots, and
    /// one in `big_every` over 1 MiB.
    pub fn message_for(&self, token: &str) -> Vec<u8> {
        message_for(token, &self.users_for(token), self.big_every)
    }
}

/// The token of message `seq` of client `thread`.
pub fn token(thread: usize, seq: usize) -> String {
    format!("t{thread}-m{seq:04}")
}

fn hash(s: &str) -> u64 {
    // FNV-1a
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn message_for(token: &str, users: &[String], big_every: u64) -> Vec<u8> {
    let h = hash(token);
    let to = users
        .iter()
        .map(|u| format!("{u}@example.org"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut m = format!(
        "From: crash@client.example\r\nTo: {to}\r\nSubject: crash test {token}\r\n\
         Message-ID: <{token}.{h:016x}@client.example>\r\nX-Token: {token}\r\n\r\n"
    )
    .into_bytes();
    let target = if big_every > 0 && h % big_every == 1 {
        (1 << 20) + (h % (256 << 10)) as usize
    } else {
        200 + (h % 6000) as usize
    };
    let mut n = 0u64;
    while m.len() < target {
        n += 1;
        let line = match n % 13 {
            0 => ".".to_string(),
            5 => format!(".{token} line {n} starts with a dot"),
            _ => format!("{token} line {n} {:016x} some text to fill the line", h ^ n),
        };
        m.extend_from_slice(line.as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// Starts `threads` clients, each sending `per_thread` messages to the
/// current server, reconnecting whenever the server changed or broke.
pub fn start_clients(
    target: &Arc<Target>,
    threads: usize,
    per_thread: usize,
    workload: &Workload,
) -> Vec<JoinHandle<Vec<Attempt>>> {
    (0..threads)
        .map(|thread| {
            let target = target.clone();
            let workload = workload.clone();
            std::thread::spawn(move || client(&target, thread, per_thread, &workload))
        })
        .collect()
}

fn client(target: &Target, thread: usize, per_thread: usize, workload: &Workload) -> Vec<Attempt> {
    let mut attempts = Vec::with_capacity(per_thread);
    let mut conn: Option<(u64, Mailer, usize)> = None;
    for seq in 0..per_thread {
        let token = token(thread, seq);
        let users = workload.users_for(&token);
        let data = workload.message_for(&token);
        let (generation, mut mailer, used) = match conn.take() {
            // A connection to a server that was replaced is dead: reconnect.
            Some((g, m, used)) if g == target.current().0 => (g, m, used),
            _ => connect(target),
        };
        let to: Vec<String> = users.iter().map(|u| format!("{u}@example.org")).collect();
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        let outcome = mailer.send("crash@client.example", &to, &data);
        let ok = matches!(outcome, Outcome::Acked(_));
        attempts.push(Attempt {
            token,
            users,
            generation,
            outcome,
        });
        // Keep a good connection for a few messages, then start a new one.
        if ok && used < 8 {
            conn = Some((generation, mailer, used + 1));
        } else if ok {
            mailer.quit();
        }
    }
    if let Some((_, m, _)) = conn {
        m.quit();
    }
    attempts
}

/// Connects to the current server, retrying while it is down or starting.
fn connect(target: &Target) -> (u64, Mailer, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (generation, addr) = target.current();
        match Mailer::connect(addr, "crash.client.example") {
            // Only if that server is still the current one (its port may
            // have been given to some other program since it was killed).
            Ok(m) if target.current().0 == generation => return (generation, m, 0),
            Ok(_) => {}
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Joins the clients; every attempt in sending order per client.
pub fn join(clients: Vec<JoinHandle<Vec<Attempt>>>) -> Vec<Attempt> {
    clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread panicked"))
        .collect()
}

/// Counts of one batch of attempts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub attempts: usize,
    pub acked: usize,
    pub refused: usize,
    pub no_reply: usize,
}

impl Tally {
    pub fn of<'a>(attempts: impl IntoIterator<Item = &'a Attempt>) -> Tally {
        let mut t = Tally::default();
        for a in attempts {
            t.attempts += 1;
            match a.outcome {
                Outcome::Acked(_) => t.acked += 1,
                Outcome::Refused(_) => t.refused += 1,
                Outcome::NoReply(_) => t.no_reply += 1,
            }
        }
        t
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {:>3}, acknowledged {:>3}, refused {}, no reply {}",
            self.attempts, self.acked, self.refused, self.no_reply
        )
    }
}

/// Files in a Maildir `new/` (cheap: names only).
pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// What the Maildirs hold, by (token, user): the number of copies.
#[derive(Debug, Default)]
pub struct Audit {
    pub copies: BTreeMap<(String, String), usize>,
    /// Files that are not one of our messages, or whose bytes differ from
    /// what was sent: (path, why).
    pub bad: Vec<(String, String)>,
}

/// Reads every delivered file of the workload's users under `mail` and
/// checks each one byte for byte against the message its token names.
pub fn audit(mail: &Path, workload: &Workload) -> Audit {
    let mut audit = Audit::default();
    for user in workload.all_users() {
        let dir = mail.join(&user).join("new");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let shown = path.display().to_string();
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    audit.bad.push((shown, format!("unreadable: {e}")));
                    continue;
                }
            };
            let Some(token) = find_token(&bytes) else {
                audit.bad.push((shown, "no X-Token header".into()));
                continue;
            };
            let delivered_to = format!("Delivered-To: {user}@example.org\r\n");
            if !String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).contains(&delivered_to) {
                audit
                    .bad
                    .push((shown.clone(), format!("no {delivered_to:?} for {token}")));
            }
            let sent = workload.message_for(&token);
            if strip_trace(&bytes) != sent.as_slice() {
                audit.bad.push((
                    shown,
                    format!(
                        "{token}: {} bytes after the trace headers differ from the {} sent",
                        strip_trace(&bytes).len(),
                        sent.len()
                    ),
                ));
                continue;
            }
            *audit.copies.entry((token, user.clone())).or_default() += 1;
        }
    }
    audit
}

fn find_token(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(4096)];
    let at = head.windows(9).position(|w| w == b"X-Token: ")? + 9;
    let end = head[at..].iter().position(|&b| b == b'\r')? + at;
    Some(String::from_utf8_lossy(&head[at..end]).into_owned())
}

/// The verdict over all attempts: what was lost, duplicated, delivered.
#[derive(Debug, Default)]
pub struct Verdict {
    /// (token, user) acknowledged with 250 and not in the Maildir.
    pub lost: Vec<(String, String, u64)>,
    /// (token, user, copies) with more than one copy.
    pub duplicated: Vec<(String, String, usize)>,
    /// Copies of messages that got no 250 (the kill raced the reply).
    pub delivered_unacked: usize,
    pub acked_delivered: usize,
    pub copies_found: usize,
    /// Copies whose token was never sent.
    pub unknown: Vec<String>,
}

/// Compares what the clients heard with what the Maildirs hold.
pub fn verdict(attempts: &[Attempt], audit: &Audit) -> Verdict {
    let mut v = Verdict::default();
    let mut sent: BTreeMap<&str, &Attempt> = BTreeMap::new();
    for a in attempts {
        sent.insert(&a.token, a);
    }
    for a in attempts {
        for user in &a.users {
            let copies = audit
                .copies
                .get(&(a.token.clone(), user.clone()))
                .copied()
                .unwrap_or(0);
            match (&a.outcome, copies) {
                (Outcome::Acked(_), 0) => {
                    v.lost.push((a.token.clone(), user.clone(), a.generation))
                }
                (Outcome::Acked(_), _) => v.acked_delivered += 1,
                (_, n) if n > 0 => v.delivered_unacked += 1,
                _ => {}
            }
            if copies > 1 {
                v.duplicated.push((a.token.clone(), user.clone(), copies));
            }
        }
    }
    for ((token, _), n) in &audit.copies {
        v.copies_found += n;
        if !sent.contains_key(token.as_str()) {
            v.unknown.push(token.clone());
        }
    }
    v
}
