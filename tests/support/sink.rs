//! A programmable remote SMTP server for outbound tests: it stands in for
//! "the recipient's MTA" where a test needs it to misbehave on purpose. What
//! it does is chosen per recipient by the local part's prefix:
//!
//! | local part   | behaviour |
//! |---|---|
//! | `tempfail…`  | RCPT gets 450 4.2.1 |
//! | `reject…`    | RCPT gets 550 5.1.1 |
//! | `escape…`    | RCPT gets 450 4.2.1 whose text holds terminal escape sequences ([`HOSTILE_TEXT`]) |
//! | `datafail…`  | RCPT ok, the final dot gets 451 4.3.0 |
//! | `datareject…`| RCPT ok, the final dot gets 554 5.6.0 |
//! | `drop…`      | RCPT ok, the connection is closed in the middle of DATA |
//! | `slow…`      | RCPT ok, the reply to the final dot comes after 2 s |
//! | `hangup…`    | accepted, then the connection is closed without QUIT |
//! | anything else| accepted |
//!
//! It records every message it accepted.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What an `escape…` recipient's 450 says after `450 4.2.1 `: a hostile
/// server's attempt to reach the administrator's terminal through `tern
/// queue show` (clear the screen, set the window title, C1 CSI, a bidi
/// override).
pub const HOSTILE_TEXT: &str = "\u{1b}[2J\u{1b}]0;owned\u{7} busy \u{9b}31m \u{202e}later";

/// A message the sink accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// The content, dot-unstuffed, CRLF line ends.
    pub data: Vec<u8>,
}

/// How the sink presents itself.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The greeting code (220 normally; 554 to refuse service).
    pub greeting: u16,
    pub smtputf8: bool,
    pub eight_bit: bool,
    pub pipelining: bool,
    /// SIZE to advertise, if any.
    pub size: Option<u64>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            greeting: 220,
            smtputf8: true,
            eight_bit: true,
            pipelining: true,
            size: None,
        }
    }
}

/// The running sink.
pub struct Sink {
    pub addr: SocketAddr,
    pub accepted: Arc<Mutex<Vec<Accepted>>>,
    pub connections: Arc<AtomicUsize>,
    /// MAIL commands seen: one per delivery attempt, whatever connection.
    pub transactions: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    /// Starts a sink on `addr` (`127.0.0.N:0` for a free port).
    pub fn start(addr: &str, options: SinkOptions) -> Sink {
        let listener = TcpListener::bind(addr).expect("bind sink");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted: Arc<Mutex<Vec<Accepted>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let transactions = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (accepted, connections, transactions, stop) = (
                accepted.clone(),
                connections.clone(),
                transactions.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let (accepted, options, transactions) =
                                (accepted.clone(), options.clone(), transactions.clone());
                            std::thread::spawn(move || {
                                let _ = session(stream, &options, &accepted, &transactions);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Sink {
            addr,
            accepted,
            connections,
            transactions,
            stop,
        }
    }

    /// Waits until at least `n` messages were accepted (panics after `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Accepted> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.accepted.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "sink got {} message(s), expected {n}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn session(
    stream: TcpStream,
    options: &SinkOptions,
    accepted: &Mutex<Vec<Accepted>>,
    transactions: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut say = |s: &str| out.write_all(format!("{s}\r\n").as_bytes());
    if options.greeting != 220 {
        say(&format!(
            "{} 5.3.2 sink.test refuses service",
            options.greeting
        ))?;
        return Ok(());
    }
    say("220 sink.test ESMTP test sink")?;
    let mut from = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            let mut ext = vec!["250-sink.test".to_string()];
            if options.pipelining {
                ext.push("250-PIPELINING".into());
            }
            if options.eight_bit {
                ext.push("250-8BITMIME".into());
            }
            if options.smtputf8 {
                ext.push("250-SMTPUTF8".into());
            }
            if let Some(size) = options.size {
                ext.push(format!("250-SIZE {size}"));
            }
            ext.push("250 ENHANCEDSTATUSCODES".into());
            say(&ext.join("\r\n"))?;
        } else if upper.starts_with("HELO") {
            say("250 sink.test")?;
        } else if upper.starts_with("MAIL FROM:") {
            transactions.fetch_add(1, Ordering::Relaxed);
            from = cmd[10..]
                .split('>')
                .next()
                .unwrap_or("")
                .trim_start_matches('<')
                .to_string();
            rcpts.clear();
            say("250 2.1.0 ok")?;
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = cmd[8..]
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            let local = rcpt.split('@').next().unwrap_or("").to_ascii_lowercase();
            if local.starts_with("escape") {
                say(&format!("450 4.2.1 {HOSTILE_TEXT}"))?;
            } else if local.starts_with("tempfail") {
                say("450 4.2.1 mailbox busy, try later")?;
            } else if local.starts_with("reject") {
                say("550 5.1.1 no such user here")?;
            } else {
                rcpts.push(rcpt);
                say("250 2.1.5 ok")?;
            }
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                say("554 5.5.1 no valid recipients")?;
                continue;
            }
            say("354 go ahead")?;
            let has = |p: &str| rcpts.iter().any(|r| r.to_ascii_lowercase().starts_with(p));
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if reader.read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                if has("drop") && data.len() > 10 {
                    // Vanish in the middle of the message.
                    return Ok(());
                }
                let l = if l.starts_with(b"..") {
                    l[1..].to_vec()
                } else {
                    l
                };
                data.extend_from_slice(&l);
            }
            if has("slow") {
                std::thread::sleep(Duration::from_secs(2));
            }
            if has("datafail") {
                say("451 4.3.0 temporary failure after data")?;
            } else if has("datareject") {
                say("554 5.6.0 content rejected")?;
            } else {
                accepted.lock().unwrap().push(Accepted {
                    mail_from: from.clone(),
                    rcpts: rcpts.clone(),
                    data,
                });
                say("250 2.0.0 queued on sink")?;
                if has("hangup") {
                    // Close without waiting for QUIT, as servers that time
                    // out idle clients do.
                    return Ok(());
                }
            }
        } else if upper == "RSET" {
            rcpts.clear();
            say("250 2.0.0 ok")?;
        } else if upper == "QUIT" {
            say("221 2.0.0 bye")?;
            return Ok(());
        } else if upper == "NOOP" {
            say("250 2.0.0 ok")?;
        } else {
            say("502 5.5.1 not implemented")?;
        }
    }
}
