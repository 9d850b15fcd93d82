//! The SMTP server session state machine (RFC 5321 §4.1, §4.3.2), sans-IO.
//!
//! The driver feeds bytes in ([`Session::feed`]) and takes [`Action`]s out
//! ([`Session::next_action`]) until there is nothing to do, flushes the replies
//! and reads again. Lookups the session cannot make itself (is this recipient
//! ours? may this sender send?) come out as [`Action::Check`]; the driver answers
//! with [`Session::answer`]. A finished message comes out as
//! [`Action::Enqueue`]; the driver makes it durable, then calls
//! [`Session::queued`]. Bytes may be split anywhere: the session behaves the
//! same however the input is chunked.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use super::address::Address;
use super::auth::{self, Exchange, Step};
use super::command::{parse_command, Command, MailParams};
use super::data::{ChunkChecker, DataOutcome, DataReceiver};
use super::envelope::{add_recipients, Envelope, Recipient, Trace};
use super::reply::Reply;

/// Settings of one listener, fixed for the session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_errors: usize,
    /// Longest command line including CRLF (RFC 5321 §4.5.3.1.4: at least 512).
    pub max_line_length: usize,
    /// A certificate is available, so STARTTLS can be offered.
    pub starttls: bool,
    /// AUTH is offered (once TLS is up: never over plaintext).
    pub auth: bool,
    /// MAIL needs a successful AUTH first (submission, RFC 6409 §4.3).
    pub auth_required: bool,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this reply (buffered; flush before the next read).
    Reply(Reply),
    /// Message content, in order. Ends with `Enqueue` or `DiscardBody`.
    Body(Vec<u8>),
    /// Drop the content received so far for this transaction.
    DiscardBody,
    /// A lookup; answer with [`Session::answer`] before asking for more.
    Check(Check),
    /// Make the message durable, then call [`Session::queued`].
    Enqueue(Box<Transaction>),
    /// Flush replies, then run a TLS handshake on the connection and call
    /// [`Session::tls_established`] (or close on failure).
    StartTls,
    /// Flush replies and close the connection.
    Close,
}

/// A question for the policy layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// May this reverse-path send mail in this session?
    Sender { from: Option<Address> },
    /// Is this recipient acceptable, and where does it go? `None` is the bare
    /// `<Postmaster>` form.
    Recipient { to: Option<Address> },
    /// Are these credentials right (AUTH, RFC 4954)?
    Credentials { user: String, password: String },
}

/// The policy layer's answer to a [`Check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    SenderOk,
    /// Accepted; the routes this recipient expands to.
    RecipientOk(Vec<Recipient>),
    /// The credentials are right: authenticated as this user.
    Authenticated(String),
    Rejected(Reply),
}

/// A finished message, ready to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub envelope: Envelope,
    pub trace: Trace,
}

/// Where the session is in the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Reading command lines.
    Command,
    /// Discarding an over-long command line up to its LF.
    SkipLine,
    /// Reading DATA content.
    Data(DataReceiver),
    /// Reading BDAT content: bytes still to come, LAST flag, and why the chunk is
    /// being discarded (the reply to give at its end), if it is.
    Chunk {
        remaining: u64,
        last: bool,
        refusal: Option<Reply>,
    },
    /// Waiting for an answer to a Check or an Enqueue.
    Waiting(Waiting),
    /// Waiting for the TLS handshake.
    Tls,
    /// In an AUTH exchange: the next line is the client's response.
    Sasl(Exchange),
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Sender,
    Recipient,
    Credentials,
    Queue,
}

/// The transaction being built between MAIL and the end of data.
#[derive(Debug, Clone)]
struct Pending {
    from: Option<Address>,
    params: MailParams,
    accepted: bool,
    rcpt_commands: usize,
    recipients: Vec<Recipient>,
    /// Content has been sent with BDAT (DATA is then refused, RFC 3030 §3).
    chunked: bool,
    chunk_size: u64,
    chunk_checker: ChunkChecker,
}

/// One SMTP server session.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    peer: IpAddr,
    /// Bytes read but not yet consumed start at `start`; consumed bytes are
    /// dropped at the next [`Session::feed`], so what the session holds is
    /// at most one partial command line plus the bytes of one feed.
    input: Vec<u8>,
    start: usize,
    /// Command lines (or AUTH responses, or skipped over-long lines) read so
    /// far: the driver's per-command deadline restarts when it changes.
    lines: u64,
    mode: Mode,
    helo: Option<(String, bool)>,
    tls: Option<String>,
    authenticated: Option<String>,
    tx: Option<Pending>,
    errors: usize,
    actions: VecDeque<Action>,
}

impl Session {
    /// A new session; its first action is the 220 greeting. `tls` describes the
    /// connection's TLS when it started encrypted (port 465).
    pub fn new(config: Arc<SessionConfig>, peer: IpAddr, tls: Option<String>) -> Session {
        let greeting = Reply::plain(220, format!("{} ESMTP tern", config.hostname));
        let mut actions = VecDeque::new();
        actions.push_back(Action::Reply(greeting));
        Session {
            config,
            peer,
            input: Vec::new(),
            start: 0,
            lines: 0,
            mode: Mode::Command,
            helo: None,
            tls,
            authenticated: None,
            tx: None,
            errors: 0,
            actions,
        }
    }

    /// Bytes read from the client. What was consumed before is dropped first
    /// (invariant 5: however the client splits its writes, the session keeps
    /// no more than the unfinished line it is reading plus `bytes`).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// A command line (or AUTH response) has begun and its end has not
    /// arrived: part of it is held, or an over-long one is being skipped.
    pub fn unfinished_line(&self) -> bool {
        match self.mode {
            Mode::SkipLine => true,
            Mode::Command | Mode::Sasl(_) => self.start < self.input.len(),
            _ => false,
        }
    }

    /// How many command lines have been read (see [`Session::unfinished_line`]):
    /// a line that starts after another ended gets its own deadline.
    pub fn lines_read(&self) -> u64 {
        self.lines
    }

    /// True while the session is reading message content (the driver uses the
    /// data timeout instead of the command timeout).
    pub fn in_data(&self) -> bool {
        matches!(self.mode, Mode::Data(_) | Mode::Chunk { .. })
    }

    /// The next thing to do, or `None` when more input (or an answer) is needed.
    pub fn next_action(&mut self) -> Option<Action> {
        loop {
            if let Some(a) = self.actions.pop_front() {
                return Some(a);
            }
            if !self.step() {
                return None;
            }
        }
    }

    /// Answers the pending [`Action::Check`].
    pub fn answer(&mut self, answer: Answer) {
        let Mode::Waiting(waiting) = self.mode.clone() else {
            return;
        };
        self.mode = Mode::Command;
        match (waiting, answer) {
            (Waiting::Sender, Answer::SenderOk) => {
                if let Some(tx) = &mut self.tx {
                    tx.accepted = true;
                }
                self.reply(Reply::SENDER_OK);
            }
            (Waiting::Recipient, Answer::RecipientOk(routes)) => {
                if let Some(tx) = &mut self.tx {
                    tx.rcpt_commands += 1;
                    add_recipients(&mut tx.recipients, routes);
                }
                self.reply(Reply::RECIPIENT_OK);
            }
            (Waiting::Credentials, Answer::Authenticated(user)) => {
                self.authenticated = Some(user);
                // RFC 4954 §6.
                self.push_reply(Reply::new(
                    235,
                    super::reply::EnhancedCode(2, 7, 0),
                    "Authentication successful",
                ));
            }
            (Waiting::Sender, Answer::Rejected(reply)) => {
                self.tx = None;
                self.reply(reply);
            }
            (_, Answer::Rejected(reply)) => self.reply(reply),
            (w, a) => {
                debug_assert!(false, "answer {a:?} does not fit {w:?}");
                self.reply(Reply::LOCAL_ERROR);
            }
        }
    }

    /// The outcome of [`Action::Enqueue`]: the queue id, or the reply to give.
    pub fn queued(&mut self, result: Result<String, Reply>) {
        if self.mode != Mode::Waiting(Waiting::Queue) {
            return;
        }
        self.mode = Mode::Command;
        self.tx = None;
        match result {
            Ok(id) => self.reply(Reply::OK.with_text(format!("Ok: queued as {id}"))),
            Err(reply) => self.reply(reply),
        }
    }

    /// The TLS handshake after STARTTLS succeeded. RFC 3207 §4.2: the session
    /// starts over, the client must say EHLO again.
    pub fn tls_established(&mut self, description: String) {
        self.tls = Some(description);
        self.helo = None;
        self.tx = None;
        self.input.clear();
        self.start = 0;
        self.mode = Mode::Command;
    }

    /// The user this session authenticated as: the one record of the login,
    /// which the driver asks for the sender, relay and From: rules.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// The EHLO/HELO argument, once given (SPF checks the HELO identity).
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_ref().map(|(name, _)| name.as_str())
    }

    /// Processes buffered input; false when nothing more can be done now.
    fn step(&mut self) -> bool {
        match &mut self.mode {
            Mode::Closed | Mode::Tls | Mode::Waiting(_) => false,
            Mode::Command | Mode::Sasl(_) => self.step_command(),
            Mode::SkipLine => {
                let pending = &self.input[self.start..];
                match pending.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        self.start += nl + 1;
                        self.lines += 1;
                        self.mode = Mode::Command;
                        true
                    }
                    None => {
                        self.start = self.input.len();
                        false
                    }
                }
            }
            Mode::Data(rx) => {
                if self.start == self.input.len() {
                    return false;
                }
                let mut out = Vec::new();
                let (n, outcome) = rx.feed(&self.input[self.start..], &mut out);
                self.start += n;
                if !out.is_empty() {
                    self.actions.push_back(Action::Body(out));
                }
                match outcome {
                    None => false,
                    Some(outcome) => {
                        self.end_of_data(outcome);
                        true
                    }
                }
            }
            Mode::Chunk {
                remaining,
                last,
                refusal,
            } => {
                let available = (self.input.len() - self.start) as u64;
                let take = (*remaining).min(available) as usize;
                let (last, refused) = (*last, refusal.is_some());
                *remaining -= take as u64;
                let done = *remaining == 0;
                let bytes = &self.input[self.start..self.start + take];
                self.start += take;
                if !refused && take > 0 {
                    if let Some(tx) = &mut self.tx {
                        tx.chunk_checker.scan(bytes);
                    }
                    self.actions.push_back(Action::Body(bytes.to_vec()));
                }
                if done {
                    let Mode::Chunk { refusal, .. } =
                        std::mem::replace(&mut self.mode, Mode::Command)
                    else {
                        unreachable!()
                    };
                    self.end_of_chunk(last, refusal);
                    true
                } else {
                    false
                }
            }
        }
    }

    fn step_command(&mut self) -> bool {
        let pending = &self.input[self.start..];
        let Some(nl) = pending.iter().position(|&b| b == b'\n') else {
            if pending.len() >= self.config.max_line_length {
                // RFC 5321 §4.5.3.1.4; skip the rest of this line when it comes.
                self.start = self.input.len();
                self.mode = Mode::SkipLine;
                self.reply(Reply::LINE_TOO_LONG);
                return true;
            }
            return false;
        };
        let mut line = &pending[..nl];
        self.start += nl + 1;
        self.lines += 1;
        // The limit counts the whole line with its CRLF (RFC 5321 §4.5.3.1.4:
        // 512 octets "including the command word and the <CRLF>"); `nl + 1`
        // is exactly that, or one less for a bare LF.
        if nl + 1 > self.config.max_line_length {
            // The 500 is the final reply to an AUTH response too: the exchange
            // is over (as when the line arrives in pieces and is skipped).
            if matches!(self.mode, Mode::Sasl(_)) {
                self.mode = Mode::Command;
            }
            self.reply(Reply::LINE_TOO_LONG);
            return true;
        }
        // Command lines may end in CRLF or, for telnet and nc users, a bare LF.
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if let Mode::Sasl(exchange) = std::mem::replace(&mut self.mode, Mode::Command) {
            let response = String::from_utf8_lossy(line).into_owned();
            self.sasl(exchange.respond(&response));
            return true;
        }
        match parse_command(line) {
            Ok(cmd) => self.command(cmd),
            Err(e) => self.reply(Reply::from(&e)),
        }
        true
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Ehlo(name) => self.hello(name, true),
            Command::Helo(name) => self.hello(name, false),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to } => self.rcpt(to),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.reset_transaction();
                self.reply(Reply::RESET);
            }
            Command::Noop => self.reply(Reply::OK),
            Command::Quit => {
                self.reply(Reply::BYE);
                self.close();
            }
            Command::Vrfy => self.reply(Reply::CANNOT_VRFY),
            Command::Expn => self.reply(Reply::NOT_IMPLEMENTED.with_text("EXPN not available")),
            Command::Help => self.reply(Reply::HELP),
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial.as_deref()),
        }
    }

    fn hello(&mut self, name: String, extended: bool) {
        // RFC 5321 §4.1.4: EHLO/HELO resets any transaction.
        self.reset_transaction();
        let text = if extended {
            let mut lines = vec![format!("{} greets {}", self.config.hostname, name)];
            lines.push("PIPELINING".into());
            lines.push(format!("SIZE {}", self.config.max_message_size));
            lines.push("8BITMIME".into());
            lines.push("SMTPUTF8".into());
            lines.push("ENHANCEDSTATUSCODES".into());
            lines.push("CHUNKING".into());
            if self.config.starttls && self.tls.is_none() {
                lines.push("STARTTLS".into());
            }
            if self.config.auth && self.tls.is_some() {
                lines.push(format!("AUTH {}", auth::MECHANISMS));
            }
            lines.join("\n")
        } else {
            self.config.hostname.clone()
        };
        self.helo = Some((name, extended));
        self.push_reply(Reply::plain(250, text));
    }

    fn mail(&mut self, from: Option<Address>, params: MailParams) {
        let extended = match &self.helo {
            None => return self.reply(Reply::NEED_HELO),
            Some((_, extended)) => *extended,
        };
        if self.tx.is_some() {
            return self.reply(Reply::NESTED_MAIL);
        }
        if self.config.auth_required && self.authenticated.is_none() {
            return self.reply(Reply::AUTH_REQUIRED);
        }
        if !extended && params != MailParams::default() {
            return self.reply(Reply::UNKNOWN_PARAMETER.with_text("Parameters need EHLO"));
        }
        if params
            .size
            .is_some_and(|s| s > self.config.max_message_size)
        {
            return self.reply(Reply::MESSAGE_TOO_BIG);
        }
        if from.as_ref().is_some_and(|a| !a.is_ascii()) && !params.smtputf8 {
            return self.reply(Reply::NEED_SMTPUTF8);
        }
        self.tx = Some(Pending {
            from: from.clone(),
            params,
            accepted: false,
            rcpt_commands: 0,
            recipients: Vec::new(),
            chunked: false,
            chunk_size: 0,
            chunk_checker: ChunkChecker::default(),
        });
        self.mode = Mode::Waiting(Waiting::Sender);
        self.actions
            .push_back(Action::Check(Check::Sender { from }));
    }

    fn rcpt(&mut self, to: Option<Address>) {
        let Some(tx) = self.tx.as_ref().filter(|tx| tx.accepted) else {
            return self.reply(Reply::NEED_MAIL);
        };
        if tx.rcpt_commands >= self.config.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452, and the client sends the rest later.
            return self.push_reply(Reply::TOO_MANY_RECIPIENTS);
        }
        if to.as_ref().is_some_and(|a| !a.is_ascii()) && !tx.params.smtputf8 {
            return self.reply(Reply::NEED_SMTPUTF8);
        }
        self.mode = Mode::Waiting(Waiting::Recipient);
        self.actions
            .push_back(Action::Check(Check::Recipient { to }));
    }

    fn data(&mut self) {
        match &self.tx {
            Some(tx) if tx.accepted && tx.chunked => self.reply(Reply::BDAT_DATA_MIX),
            // RFC 2920 §3.1: DATA after every RCPT failed gets 554.
            Some(tx) if tx.accepted && tx.recipients.is_empty() => {
                self.reply(Reply::NO_VALID_RECIPIENTS)
            }
            Some(tx) if tx.accepted => {
                self.mode = Mode::Data(DataReceiver::new(self.config.max_message_size));
                self.push_reply(Reply::START_DATA);
            }
            _ => self.reply(Reply::NEED_TRANSACTION),
        }
    }

    /// RFC 3030 §2: the chunk is always read, even when it will be refused.
    fn bdat(&mut self, size: u64, last: bool) {
        let refusal = match &mut self.tx {
            Some(tx) if tx.accepted && !tx.recipients.is_empty() => {
                tx.chunked = true;
                // Sizes come from the client: a sum that would wrap is as
                // much over the limit as one that does not.
                match tx.chunk_size.checked_add(size) {
                    Some(total) if total <= self.config.max_message_size => {
                        tx.chunk_size = total;
                        None
                    }
                    _ => Some(Reply::MESSAGE_TOO_BIG),
                }
            }
            Some(tx) if tx.accepted => Some(Reply::NO_VALID_RECIPIENTS),
            _ => Some(Reply::NEED_TRANSACTION),
        };
        if refusal.is_some() {
            self.discard_body_if_chunked();
        }
        self.mode = Mode::Chunk {
            remaining: size,
            last,
            refusal,
        };
    }

    fn end_of_chunk(&mut self, last: bool, refusal: Option<Reply>) {
        if let Some(reply) = refusal {
            // A refused chunk ends the transaction (RFC 3030 §3: the client must
            // not send more chunks; any it pipelined get 503).
            if reply != Reply::NEED_TRANSACTION {
                self.tx = None;
            }
            return self.reply(reply);
        }
        let Some(tx) = &self.tx else {
            return self.reply(Reply::NEED_TRANSACTION);
        };
        if tx.chunk_checker.has_bare(last) {
            self.actions.push_back(Action::DiscardBody);
            self.tx = None;
            return self.reply(Reply::BARE_LINE_ENDING);
        }
        if last {
            self.enqueue();
        } else {
            let size = tx.chunk_size;
            self.push_reply(Reply::OK.with_text(format!("{size} octets received")));
        }
    }

    fn end_of_data(&mut self, outcome: DataOutcome) {
        self.mode = Mode::Command;
        match outcome {
            DataOutcome::Complete => self.enqueue(),
            DataOutcome::BareLineEnding => {
                self.actions.push_back(Action::DiscardBody);
                self.tx = None;
                self.reply(Reply::BARE_LINE_ENDING);
            }
            DataOutcome::TooBig => {
                self.actions.push_back(Action::DiscardBody);
                self.tx = None;
                self.reply(Reply::MESSAGE_TOO_BIG);
            }
        }
    }

    fn enqueue(&mut self) {
        let Some(tx) = self.tx.take() else {
            return self.reply(Reply::NEED_TRANSACTION);
        };
        let (helo, extended) = self.helo.clone().unwrap_or_default();
        let transaction = Transaction {
            envelope: Envelope {
                sender: tx.from,
                recipients: tx.recipients,
                eight_bit: tx.params.eight_bit,
                smtputf8: tx.params.smtputf8,
            },
            trace: Trace {
                helo,
                peer: self.peer,
                tls: self.tls.clone(),
                authenticated: self.authenticated.clone(),
                extended,
                smtputf8: tx.params.smtputf8,
            },
        };
        // Keep `tx` cleared; `queued` answers.
        self.mode = Mode::Waiting(Waiting::Queue);
        self.actions
            .push_back(Action::Enqueue(Box::new(transaction)));
    }

    /// RFC 4954 §4: AUTH, only over TLS, once, outside a transaction.
    fn auth(&mut self, mechanism: &str, initial: Option<&str>) {
        if !self.config.auth {
            return self.reply(Reply::NOT_IMPLEMENTED.with_text("AUTH not available here"));
        }
        if self.helo.as_ref().is_none_or(|(_, extended)| !extended) {
            // RFC 4954 §4: AUTH is an ESMTP extension; say EHLO (again after TLS).
            return self.reply(Reply::NEED_HELO.with_text("Send EHLO first"));
        }
        if self.tls.is_none() {
            return self.reply(Reply::ENCRYPTION_REQUIRED);
        }
        if self.authenticated.is_some() {
            return self.reply(Reply::BAD_SEQUENCE.with_text("Already authenticated"));
        }
        if self.tx.is_some() {
            return self.reply(
                Reply::BAD_SEQUENCE.with_text("AUTH not allowed during a mail transaction"),
            );
        }
        self.sasl(auth::start(mechanism, initial));
    }

    fn sasl(&mut self, step: Step) {
        match step {
            Step::Challenge(reply, exchange) => {
                self.mode = Mode::Sasl(exchange);
                self.push_reply(reply);
            }
            Step::Credentials { user, password } => {
                self.mode = Mode::Waiting(Waiting::Credentials);
                self.actions
                    .push_back(Action::Check(Check::Credentials { user, password }));
            }
            Step::Fail(reply) => self.reply(reply),
        }
    }

    fn starttls(&mut self) {
        if self.tls.is_some() {
            return self.reply(Reply::ALREADY_TLS);
        }
        if !self.config.starttls {
            return self.reply(Reply::TLS_UNAVAILABLE);
        }
        if self.tx.is_some() {
            return self.reply(
                Reply::BAD_SEQUENCE.with_text("STARTTLS not allowed during a mail transaction"),
            );
        }
        self.push_reply(Reply::READY_FOR_TLS);
        // RFC 3207 §4.2 (and CVE-2011-0411): anything the client pipelined after
        // STARTTLS arrived in plaintext and is thrown away.
        self.input.clear();
        self.start = 0;
        self.mode = Mode::Tls;
        self.actions.push_back(Action::StartTls);
    }

    fn reset_transaction(&mut self) {
        self.discard_body_if_chunked();
        self.tx = None;
    }

    fn discard_body_if_chunked(&mut self) {
        if self.tx.as_ref().is_some_and(|tx| tx.chunked) {
            self.actions.push_back(Action::DiscardBody);
        }
    }

    fn close(&mut self) {
        self.mode = Mode::Closed;
        self.actions.push_back(Action::Close);
    }

    /// Sends a reply that does not count as a client error.
    fn push_reply(&mut self, reply: Reply) {
        self.actions.push_back(Action::Reply(reply));
    }

    /// Sends a reply; error replies count towards the limit, and the one that
    /// would pass it becomes 421 and the end of the session.
    fn reply(&mut self, reply: Reply) {
        if reply.is_error() {
            if self.errors >= self.config.max_errors {
                self.push_reply(Reply::TOO_MANY_ERRORS);
                self.close();
                return;
            }
            self.errors += 1;
        }
        self.push_reply(reply);
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
