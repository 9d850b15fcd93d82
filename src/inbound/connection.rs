//! The per-connection driver: reads bytes, feeds the sans-IO [`Session`], and
//! carries out its actions — write replies, answer checks, buffer the body,
//! queue the message durably, upgrade to TLS — with the timeouts of the config.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Role};
use crate::live::Snapshot;
use crate::queue::{BodyBuffer, Spool, BODY_MEMORY_LIMIT};
use crate::smtp::{Action, Address, Answer, Check, Reply, Session, SessionConfig, Transaction};

use super::accept::{accept, Checked, Origin};
use super::auth;
use super::auth_results;
use super::policy;
use super::sender_domain;
use super::senders::{self, Sender};
use super::spam;
use super::throttle::Throttle;
use super::verify::{self, Disposition};
use crate::outbound::resolver::Resolver;

/// Bytes asked of the socket per read; also the most replies held unsent.
const READ_SIZE: usize = 64 << 10;
/// How long the last reply and the close may take.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// When a data phase that began at `start` and has brought `bytes` so far
/// must end: `data_timeout`, plus the time `min_data_rate` allows for those
/// bytes (so a client that keeps sending at that rate is never cut off, and
/// one that drips an octet now and then is). `None` without a minimum rate.
fn data_deadline(limits: &crate::config::Limits, start: Instant, bytes: u64) -> Option<Instant> {
    let rate = limits.min_data_rate;
    if rate == 0 {
        return None;
    }
    let earned = Duration::try_from_secs_f64(bytes as f64 / rate as f64).ok()?;
    start.checked_add(limits.data_timeout.checked_add(earned)?)
}

/// The socket, before or after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(bytes).await,
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
            Conn::Gone => Ok(()),
        };
    }
}

/// Everything a connection needs from the server.
#[derive(Clone)]
pub struct Context {
    /// Config, certificate and DKIM signer, as they were when the client
    /// connected: the session keeps them whatever a reload does.
    pub snapshot: Arc<Snapshot>,
    pub role: Role,
    pub spool: Spool,
    pub throttle: Arc<Throttle>,
    /// DNS for the checks on mail from other servers.
    pub resolver: Arc<dyn Resolver>,
    pub shutdown: watch::Receiver<bool>,
}

/// The session settings for a listener of `role`.
pub fn session_config(config: &Config, role: Role, tls: bool) -> SessionConfig {
    SessionConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.limits.message_size,
        max_recipients: config.limits.recipients,
        max_errors: config.limits.errors,
        max_line_length: config.limits.line_length,
        starttls: tls && role != Role::Submissions,
        auth: role != Role::Mx,
        auth_required: role != Role::Mx,
    }
}

/// Serves one client until it quits, times out, breaks a limit or the server
/// shuts down.
pub async fn serve(ctx: Context, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::Plain(stream);
    let mut tls_description = None;
    if ctx.role == Role::Submissions {
        // RFC 8314 §3: TLS from the first byte. The handshake is the client's
        // first "command": it gets the command timeout.
        let until = Instant::now() + ctx.snapshot.config.limits.command_timeout;
        match handshake(&ctx, conn, until).await {
            Some((c, d)) => {
                conn = c;
                tls_description = Some(d);
            }
            None => return,
        }
    }
    let tls = ctx.snapshot.tls.is_some();
    let session_config = Arc::new(session_config(&ctx.snapshot.config, ctx.role, tls));
    let session = Session::new(session_config, peer.ip(), tls_description);
    let deadline = Instant::now() + ctx.snapshot.config.limits.session_timeout;
    let mut driver = Driver {
        deadline,
        ctx,
        peer,
        conn,
        session,
        out: Vec::with_capacity(512),
        body: None,
        body_failed: None,
        checks: None,
    };
    driver.run().await;
    // A TLS close_notify is a write too: bounded like the last reply.
    let _ = tokio::time::timeout(CLOSE_GRACE, driver.conn.shutdown()).await;
}

/// Runs the TLS handshake, giving up at `until`; `None` if it failed (logged).
async fn handshake(ctx: &Context, conn: Conn, until: Instant) -> Option<(Conn, String)> {
    let (Some(tls), Conn::Plain(tcp)) = (&ctx.snapshot.tls, conn) else {
        return None;
    };
    let acceptor = TlsAcceptor::from(tls.clone());
    let peer = tcp.peer_addr().ok();
    match tokio::time::timeout_at(until, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            let description = crate::tls::describe(tls.get_ref().1);
            Some((Conn::Tls(Box::new(tls)), description))
        }
        Ok(Err(e)) => {
            log::info!("peer={peer:?} TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            log::info!("peer={peer:?} TLS handshake timed out");
            None
        }
    }
}

struct Driver {
    /// When the session must end, whatever the client is doing.
    deadline: Instant,
    ctx: Context,
    peer: SocketAddr,
    conn: Conn,
    session: Session,
    out: Vec<u8>,
    body: Option<BodyBuffer>,
    /// Writing the body failed (with this error): the message must not be
    /// queued.
    body_failed: Option<std::io::ErrorKind>,
    /// SPF and iprev of the transaction, running since MAIL FROM (mx
    /// listeners, `[mx] authenticate`).
    checks: Option<verify::Pending>,
}

impl Driver {
    async fn run(&mut self) {
        let config = self.ctx.snapshot.config.clone();
        let limits = &config.limits;
        let mut buf = vec![0u8; READ_SIZE];
        // The command line being read: its number and the deadline set when
        // its first octet arrived (a line dripped in one octet at a time
        // still has to be complete by then).
        let mut line: Option<(u64, Instant)> = None;
        // The data phase (DATA content, or one BDAT chunk) under way: when it
        // began and how many bytes have been read since.
        let mut data: Option<(Instant, u64)> = None;
        let mut last_read = Instant::now();
        loop {
            if !self.do_actions().await {
                return;
            }
            if self.flush().await.is_err() {
                return;
            }
            if *self.ctx.shutdown.borrow() && !self.session.in_data() {
                return self.close_with(Reply::SHUTTING_DOWN).await;
            }
            let now = Instant::now();
            if now >= self.deadline {
                return self.close_with(Reply::TIMEOUT).await;
            }
            // When the next read must have come, and what to say if not.
            let (until, expired) = if self.session.in_data() {
                line = None;
                let (start, bytes) = *data.get_or_insert((now, 0));
                let idle = now + limits.data_timeout;
                match data_deadline(limits, start, bytes) {
                    Some(rate_bound) if rate_bound < idle => (rate_bound, Reply::DATA_TOO_SLOW),
                    _ => (idle, Reply::TIMEOUT),
                }
            } else {
                data = None;
                if self.session.unfinished_line() {
                    let n = self.session.lines_read();
                    let (_, until) = *line
                        .filter(|(seen, _)| *seen == n)
                        .get_or_insert((n, last_read + limits.command_timeout));
                    line = Some((n, until));
                    (until, Reply::TIMEOUT)
                } else {
                    line = None;
                    (now + limits.command_timeout, Reply::TIMEOUT)
                }
            };
            let (until, expired) = if self.deadline <= until {
                (self.deadline, Reply::TIMEOUT)
            } else {
                (until, expired)
            };
            let mut shutdown = self.ctx.shutdown.clone();
            tokio::select! {
                read = tokio::time::timeout_at(until, self.conn.read(&mut buf)) => match read {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(n)) => {
                        last_read = Instant::now();
                        if let Some((_, bytes)) = &mut data {
                            *bytes += n as u64;
                        }
                        self.session.feed(&buf[..n]);
                    }
                    Err(_) => {
                        log::info!("peer={} {}", self.peer, expired.text);
                        return self.close_with(expired).await;
                    }
                },
                // Idle sessions end at once on shutdown; one in DATA finishes first.
                _ = shutdown.changed(), if !self.session.in_data() => {}
            }
        }
    }

    /// Carries out the session's actions; false when the connection must end.
    async fn do_actions(&mut self) -> bool {
        while let Some(action) = self.session.next_action() {
            match action {
                Action::Reply(reply) => {
                    reply.write_to(&mut self.out);
                    // Replies to a long pipelined burst go out as they pile
                    // up: what is held for the client stays bounded.
                    if self.out.len() >= READ_SIZE && self.flush().await.is_err() {
                        return false;
                    }
                }
                Action::Body(bytes) => self.write_body(&bytes),
                Action::DiscardBody => {
                    self.body = None;
                    self.body_failed = None;
                }
                Action::Check(Check::Credentials { user, password }) => {
                    let answer = self.login(user, password).await;
                    self.session.answer(answer);
                }
                Action::Check(Check::Sender { .. }) if !self.room_for_mail() => {
                    self.session
                        .answer(Answer::Rejected(Reply::INSUFFICIENT_STORAGE));
                }
                Action::Check(Check::Sender { from }) => {
                    let answer = self.check_sender(from).await;
                    self.session.answer(answer);
                }
                Action::Check(Check::Recipient { to }) => {
                    let login = self.session.authenticated();
                    let srs = self.ctx.snapshot.srs.as_deref().map(|srs| {
                        let now = self.ctx.spool.clock().now();
                        (srs, crate::routing::srs::today(now))
                    });
                    let config = &self.ctx.snapshot.config;
                    let answer = policy::recipient(config, login, to.as_ref(), srs);
                    self.session.answer(answer);
                }
                Action::Enqueue(tx) => {
                    let result = self.enqueue(*tx).await;
                    if result.is_ok() {
                        crate::queue::activity::activity()
                            .received(matches!(self.conn, Conn::Tls(_)));
                    }
                    self.session.queued(result);
                }
                Action::StartTls => {
                    if self.flush().await.is_err() {
                        return false;
                    }
                    let conn = std::mem::replace(&mut self.conn, Conn::Gone);
                    // Invariant 5: no hidden limit. The handshake is held to
                    // the command timeout and the session's end, like a command.
                    let limits = &self.ctx.snapshot.config.limits;
                    let until = self.deadline.min(Instant::now() + limits.command_timeout);
                    match handshake(&self.ctx, conn, until).await {
                        Some((conn, description)) => {
                            self.conn = conn;
                            self.session.tls_established(description);
                        }
                        None => return false,
                    }
                }
                Action::Close => {
                    let _ = self.flush().await;
                    return false;
                }
            }
        }
        true
    }

    /// Answers a sender check ([`Driver::check_sender_domain`]); when the
    /// sender may send on an mx listener, starts SPF and iprev.
    async fn check_sender(&mut self, from: Option<Address>) -> Answer {
        // A new transaction: the checks of an earlier one stop.
        self.checks = None;
        let answer = self.check_sender_domain(from.as_ref()).await;
        let config = &self.ctx.snapshot.config;
        let login = self.session.authenticated();
        if answer == Answer::SenderOk && verify::applies(&config.mx, self.ctx.role, login) {
            // Issue 20 point 4: after the existence check, through the same
            // resolver (and its cache).
            if let Some(authenticator) = self.ctx.resolver.authenticator() {
                self.checks = Some(verify::begin(
                    authenticator,
                    self.peer.ip(),
                    self.session.helo().unwrap_or_default(),
                    from.as_ref(),
                    &config.hostname,
                    config.mx.dns_timeout,
                ));
            }
        }
        answer
    }

    /// The policy's rules, then, for an anonymous sender on an mx listener,
    /// whether its domain exists in DNS.
    async fn check_sender_domain(&mut self, from: Option<&Address>) -> Answer {
        let config = self.ctx.snapshot.config.clone();
        let login = self.session.authenticated();
        let answer = policy::sender(&config, login, from);
        if answer != Answer::SenderOk || login.is_some() || self.ctx.role != Role::Mx {
            return answer;
        }
        let Some(domain) = sender_domain::domain_to_verify(&config, from) else {
            return answer;
        };
        let verdict =
            sender_domain::verify(self.ctx.resolver.as_ref(), domain, config.mx.dns_timeout).await;
        match verdict.refusal() {
            None => {
                log::debug!(
                    "peer={} sender domain {domain}: {}",
                    self.peer,
                    verdict.describe()
                );
                answer
            }
            Some(reply) => {
                log::info!(
                    peer:% = self.peer.ip(), action = "sender-refused";
                    "peer={} sender <{}> refused ({} {}): domain {domain} {}",
                    self.peer,
                    from.map(ToString::to_string).unwrap_or_default(),
                    reply.code,
                    reply.enhanced.map(|e| e.to_string()).unwrap_or_default(),
                    verdict.describe()
                );
                Answer::Rejected(reply)
            }
        }
    }

    /// Checks a login, with the throttle of failures (per client and per
    /// login) and the cap on password checks running at once.
    async fn login(&mut self, login: String, password: String) -> Answer {
        let throttle = self.ctx.throttle.clone();
        let key = auth::throttle_key(&self.ctx.snapshot.config, &login);
        let peer = self.peer;
        let attempt = match throttle.begin(peer.ip(), &key, std::time::Instant::now()) {
            Ok(attempt) => attempt,
            Err(refusal) => {
                log::warn!(peer:% = peer.ip(), action = "login-refused"; "peer={peer} AUTH refused: {refusal} (login {key:?})");
                return Answer::Rejected(refusal.reply());
            }
        };
        let permit = match throttle.check_permit().await {
            Ok(permit) => permit,
            Err(refusal) => {
                log::warn!(peer:% = peer.ip(), action = "login-refused"; "peer={peer} AUTH refused: {refusal} (login {key:?})");
                return Answer::Rejected(refusal.reply());
            }
        };
        let config = self.ctx.snapshot.config.clone();
        let name = login.clone();
        // The permit goes with the check: it is held while argon2 runs, even
        // if this session ends meanwhile.
        let verdict = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            auth::verify(&config, &name, &password)
        })
        .await;
        match verdict {
            Ok(Some(user)) => {
                log::info!(peer:% = peer.ip(), action = "login"; "peer={peer} authenticated as {user}");
                Answer::Authenticated(user)
            }
            Ok(None) => {
                let shown: String = login.chars().take(64).collect();
                if attempt.failed(std::time::Instant::now()) {
                    log::warn!(peer:% = peer.ip(), action = "login-locked"; "login {key:?} locked: too many failed attempts within the hour, the last from peer={peer}; only clients without failures of their own are checked until it expires");
                }
                log::warn!(peer:% = peer.ip(), action = "login-failed"; "peer={peer} AUTH failed for {shown:?}");
                Answer::Rejected(Reply::BAD_CREDENTIALS)
            }
            Err(e) => {
                log::error!("peer={peer} password check failed: {e}");
                Answer::Rejected(Reply::LOCAL_ERROR)
            }
        }
    }

    /// False while the spool's filesystem is below the `free_space`
    /// reserve: then MAIL gets 452 4.3.1 (logged).
    fn room_for_mail(&self) -> bool {
        match self
            .ctx
            .spool
            .free_space()
            .check(self.ctx.snapshot.config.limits.free_space)
        {
            Ok(()) => true,
            Err(shortage) => {
                log::warn!("peer={} MAIL refused: {shortage}", self.peer);
                false
            }
        }
    }

    fn write_body(&mut self, bytes: &[u8]) {
        let body = self
            .body
            .get_or_insert_with(|| BodyBuffer::new(&self.ctx.spool.tmp_dir(), BODY_MEMORY_LIMIT));
        if let Err(e) = body.write(bytes) {
            if self.body_failed.is_none() {
                log::error!("peer={} cannot buffer message body: {e}", self.peer);
            }
            self.body_failed = Some(e.kind());
        }
    }

    /// Makes the message durable; the reply tells the client the outcome.
    async fn enqueue(&mut self, tx: Transaction) -> Result<String, Reply> {
        let mut buffer = self
            .body
            .take()
            .unwrap_or_else(|| BodyBuffer::new(&self.ctx.spool.tmp_dir(), BODY_MEMORY_LIMIT));
        if let Some(kind) = self.body_failed.take() {
            return Err(storage_reply(kind));
        }
        let body = buffer
            .ensure_final_crlf()
            .and_then(|_| buffer.take())
            .map_err(|e| {
                log::error!("peer={} cannot buffer message body: {e}", self.peer);
                storage_reply(e.kind())
            })?;
        // DESIGN invariant 7: a login's From: and Sender: are its own.
        let login = self.session.authenticated().map(str::to_owned);
        if let Some(user) = login.as_deref() {
            let checked =
                senders::check_message(&self.ctx.snapshot.config, Sender::Login(user), &body);
            if let Err(e) = checked.await {
                log::warn!("peer={} user={user} message refused: {e}", self.peer);
                return Err(Reply::from(&e));
            }
        }
        let (mut body, mut checked, summary) = match self.checks.take() {
            Some(pending) => {
                let (body, checked, summary) = self.verify(pending, body).await?;
                (body, checked, Some(summary))
            }
            None => (body, Checked::default(), None),
        };
        let config = &self.ctx.snapshot.config;
        if let Some(filter) = spam::applies(config.spam.as_ref(), self.ctx.role, login.as_deref()) {
            let id = self.ctx.spool.new_id();
            let request = spam::smtp_request(&tx, &config.hostname, id, self.peer);
            let peer = self.peer.ip().to_string();
            let tmp_dir = self.ctx.spool.tmp_dir();
            let scanned;
            (body, scanned) = spam::scan(filter, request, body, id, &peer, &tmp_dir).await?;
            checked.id = Some(id);
            checked.header.insert_str(0, &scanned.header);
            if scanned.folder == crate::queue::Folder::Junk {
                checked.folder = scanned.folder;
            }
        }
        let show_peer = self.ctx.role == Role::Mx || self.ctx.snapshot.config.submission.trace;
        let origin = Origin::Smtp {
            trace: tx.trace,
            show_peer,
        };
        let sign = login.is_some();
        let snapshot = &self.ctx.snapshot;
        match accept(
            &self.ctx.spool,
            snapshot,
            tx.envelope,
            origin,
            body,
            sign,
            checked,
        )
        .await
        {
            Ok(id) => {
                if let Some(summary) = summary {
                    log_verdict(id, self.peer, &summary);
                }
                Ok(id.to_string())
            }
            Err(e) => {
                log::error!("peer={} cannot queue message: {e}", self.peer);
                Err(match &e {
                    crate::queue::SpoolError::Io(io) => storage_reply(io.kind()),
                    _ => Reply::QUEUE_FAILED,
                })
            }
        }
    }

    /// Finishes the checks of mail from another server: DKIM and DMARC of
    /// the message (when it is at most `[mx] dkim_max_size`), the policy's
    /// verdict, our Authentication-Results field, and the body without
    /// forged ones. `Err` is the refusal at the end of DATA.
    async fn verify(
        &mut self,
        pending: verify::Pending,
        body: crate::queue::Body,
    ) -> Result<(crate::queue::Body, Checked, verify::Summary), Reply> {
        let config = self.ctx.snapshot.config.clone();
        let deadline = Instant::now() + config.mx.dns_timeout;
        // Invariant 5: the whole message is held for DKIM only up to
        // dkim_max_size, and within the budget shared by all sessions.
        let permit = if body.len <= config.mx.dkim_max_size {
            verify::reserve_memory(body.len, deadline).await
        } else {
            None
        };
        let dkim = match (&permit, body.len <= config.mx.dkim_max_size) {
            (_, false) => Err(verify::Unverified::TooLarge),
            (None, true) => Err(verify::Unverified::Busy),
            (Some(_), true) => Ok(()),
        };
        // Unverified, only the header section is read (for DMARC's From:).
        let limit = if dkim.is_ok() {
            body.len
        } else {
            HEADER_READ_LIMIT
        };
        let message = match read_head(&body, limit).await {
            Ok(bytes) => bytes,
            Err(e) => {
                log::error!(
                    "peer={} cannot read the message to verify it: {e}",
                    self.peer
                );
                return Err(storage_reply(e.kind()));
            }
        };
        let verified = verify::finish(
            pending,
            &message,
            dkim,
            &config.mx,
            &config.hostname,
            deadline,
        )
        .await;
        drop(message);
        drop(permit);
        let summary = verified.summary;
        if let Disposition::Refuse(reply) = &verified.disposition {
            log::info!(
                peer:% = self.peer.ip(), action = "refused", spf = summary.spf,
                dkim = summary.dkim, dmarc = summary.dmarc, iprev = summary.iprev;
                "peer={} message refused ({} {}): spf={} dkim={} dmarc={} iprev={} from_domain={}",
                self.peer,
                reply.code,
                reply.enhanced.map(|e| e.to_string()).unwrap_or_default(),
                summary.spf,
                summary.dkim,
                summary.dmarc,
                summary.iprev,
                summary.from_domain
            );
            return Err(reply.clone());
        }
        if let Disposition::Junk(why) = &verified.disposition {
            log::info!("peer={} message goes to Junk: {why}", self.peer);
        }
        let tmp_dir = self.ctx.spool.tmp_dir();
        let hostname = config.hostname.clone();
        let stripped =
            tokio::task::spawn_blocking(move || auth_results::strip(body, &hostname, &tmp_dir))
                .await;
        let body = match stripped {
            Ok(Ok((body, 0))) => body,
            Ok(Ok((body, n))) => {
                log::info!(
                    "peer={} removed {n} Authentication-Results field(s) claiming to be ours",
                    self.peer
                );
                body
            }
            Ok(Err(e)) => {
                log::error!("peer={} cannot rewrite the message: {e}", self.peer);
                return Err(storage_reply(e.kind()));
            }
            Err(e) => {
                log::error!("peer={} the rewriting task failed: {e}", self.peer);
                return Err(Reply::LOCAL_ERROR);
            }
        };
        let checked = Checked {
            header: verified.header,
            folder: verified.disposition.folder(),
            id: None,
        };
        Ok((body, checked, summary))
    }

    /// Writes the buffered replies, bounded like a command (invariant 5): a
    /// client that stops reading cannot hold its slot past the command
    /// timeout or the session's end.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let limits = &self.ctx.snapshot.config.limits;
        let until = self.deadline.min(Instant::now() + limits.command_timeout);
        let result = match tokio::time::timeout_at(until, self.conn.write_all(&self.out)).await {
            Ok(result) => result,
            Err(_) => {
                log::info!(
                    "peer={} write timed out: the client is not reading",
                    self.peer
                );
                Err(std::io::ErrorKind::TimedOut.into())
            }
        };
        self.out.clear();
        result
    }

    async fn close_with(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
        let _ = tokio::time::timeout(CLOSE_GRACE, self.flush()).await;
    }
}

/// How much of a message that is not DKIM-verified is read for its header
/// section (DMARC needs its From:).
const HEADER_READ_LIMIT: u64 = 64 << 10;

/// The first `limit` bytes of the message (the caller bounds `limit`), cut
/// after the header section when that ends sooner and `limit` is not the
/// whole; a spilled body is read on a blocking thread.
async fn read_head(body: &crate::queue::Body, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let reader = body.reader()?;
    let whole = limit >= body.len;
    let capacity = usize::try_from(limit.min(body.len)).unwrap_or(0);
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::with_capacity(capacity);
        reader.take(limit).read_to_end(&mut bytes)?;
        if !whole {
            if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                bytes.truncate(end + 4);
            }
        }
        Ok(bytes)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Logs the verdict on an accepted message with its queue id, one journald
/// field per method (SPF of MAIL FROM, DKIM, DMARC, iprev).
fn log_verdict(id: crate::queue::QueueId, peer: SocketAddr, s: &verify::Summary) {
    log::info!(
        queue_id:% = id, peer:% = peer.ip(), action = "verified", spf = s.spf,
        dkim = s.dkim, dmarc = s.dmarc, iprev = s.iprev;
        "queue_id={id} peer={peer} spf={} dkim={} dmarc={} iprev={} from_domain={}",
        s.spf, s.dkim, s.dmarc, s.iprev, s.from_domain
    );
}

/// The reply to a message that could not be stored: 452 4.3.1 when the disk
/// (or a quota) is full, so the client retries later; 451 4.3.0 otherwise.
fn storage_reply(kind: std::io::ErrorKind) -> Reply {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Reply::INSUFFICIENT_STORAGE,
        _ => Reply::QUEUE_FAILED,
    }
}
