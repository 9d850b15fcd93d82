//! Unit tests of the daemon's end of the control socket: claiming the socket
//! file (stale, live, in the way), and real conversations with a spool behind
//! it, through the blocking client and through raw bytes. The daemon behind
//! the socket is [`TestDaemon`]: submissions are the inbound side's business
//! (tested in tests/sendmail.rs); here it queues what it is given and
//! reloads as it is told.

use super::*;
use crate::config::Config;
use crate::control::Client;
use crate::live::Live;
use crate::queue::dsn::Notifier;
use crate::queue::listing::RecipientState;
use crate::queue::{Body, QueueId, Spool};
use crate::smtp::{Address, Envelope, Recipient, Route};
use std::io::{BufRead, Write};

/// The rest of the daemon, as the control server sees it: the default
/// config, a submission queued as it comes, a reload that says what
/// `reload_answer` holds.
struct TestDaemon {
    config: Arc<Config>,
    spool: Spool,
    reload_answer: std::sync::Mutex<Result<String, String>>,
}

impl crate::control::Daemon for TestDaemon {
    fn config(&self) -> Arc<Config> {
        self.config.clone()
    }

    fn tmp_dir(&self) -> PathBuf {
        self.spool.tmp_dir()
    }

    async fn submit(
        &self,
        _sender: String,
        recipients: Vec<String>,
        body: Body,
        _peer: Peer,
    ) -> Result<QueueId, Failure> {
        let id = self.spool.new_id();
        let envelope = Envelope {
            sender: None,
            recipients: recipients
                .iter()
                .map(|r| Recipient {
                    original: r.clone(),
                    route: Route::Remote(Address::parse(r).unwrap()),
                })
                .collect(),
            eight_bit: false,
            smtputf8: false,
        };
        self.spool
            .enqueue(id, envelope, Vec::new(), body)
            .await
            .map_err(|e| Failure::new(FailureKind::Io, e.to_string()))?;
        Ok(id)
    }

    async fn reload(&self) -> Result<String, String> {
        self.reload_answer.lock().unwrap().clone()
    }
}

struct Daemon {
    _dir: tempfile::TempDir,
    daemon: Arc<TestDaemon>,
    socket: PathBuf,
    spool: Spool,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn daemon() -> Daemon {
    let (dir, spool) = crate::queue::spool::scratch();
    let live = Arc::new(Live::new(Config::default_config()));
    let admin = Arc::new(Admin::new(
        spool.clone(),
        Arc::new(Notifier::new(
            spool.clone(),
            live.clone(),
            // The messages here come from `<>`: no notice is ever routed.
            Arc::new(|_: &Config, _: &Address| None),
        )),
    ));
    let daemon = Arc::new(TestDaemon {
        config: live.config(),
        spool: spool.clone(),
        reload_answer: std::sync::Mutex::new(Ok("ok: summary".into())),
    });
    let socket = dir.path().join("control.sock");
    let listener = ControlListener::bind(&socket).unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(listener.serve(admin, daemon.clone(), stopped));
    Daemon {
        _dir: dir,
        daemon,
        socket,
        spool,
        stop,
        task,
    }
}

/// Queues a message from `<>` (so no bounce is ever made) to a remote address.
async fn queue_one(spool: &Spool) -> QueueId {
    let id = spool.new_id();
    let envelope = Envelope {
        sender: None,
        recipients: vec![Recipient {
            original: "someone@remote.example".into(),
            route: Route::Remote(Address::parse("someone@remote.example").unwrap()),
        }],
        eight_bit: false,
        smtputf8: false,
    };
    let body = Body::from_bytes(b"Subject: hi\r\nFrom: x@y.example\r\n\r\nbody\r\n".to_vec());
    spool
        .enqueue(id, envelope, b"Received: test\r\n".to_vec(), body)
        .await
        .unwrap();
    spool
        .update(vec![crate::queue::Record::Attempt {
            id,
            attempts: 1,
            next_attempt: u64::MAX / 2,
            errors: vec![crate::queue::Diagnostic::from_v1_text(
                "451 4.4.1 try later",
            )],
        }])
        .await
        .unwrap();
    id
}

/// Runs blocking client code off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_socket_refuses_a_second_daemon_and_a_stale_one_is_replaced() {
    let d = daemon().await;
    assert!(matches!(
        ControlListener::bind(&d.socket),
        Err(ControlError::AlreadyRunning(_))
    ));
    d.stop.send(true).unwrap();
    d.task.await.unwrap();
    assert!(!d.socket.exists(), "the socket file is removed at shutdown");

    // A daemon killed with -9 leaves its socket file behind.
    drop(std::os::unix::net::UnixListener::bind(&d.socket).unwrap());
    assert!(d.socket.exists());
    let listener = ControlListener::bind(&d.socket).unwrap();
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    drop(listener);
    assert!(!d.socket.exists());
}

#[tokio::test]
async fn something_else_in_the_way_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    std::fs::write(&path, "precious").unwrap();
    assert!(matches!(
        ControlListener::bind(&path),
        Err(ControlError::NotASocket(_))
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn no_daemon_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    assert!(matches!(
        Client::connect(&path),
        Err(ControlError::NotRunning(_))
    ));
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(matches!(
        Client::connect(&path),
        Err(ControlError::NotRunning(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_answered_with_typed_results() {
    let d = daemon().await;
    let id = queue_one(&d.spool).await;
    let socket = d.socket.clone();
    blocking(move || {
        let mut c = Client::connect(&socket).unwrap();
        let info = c.ping().unwrap();
        assert_eq!(info.pid, std::process::id());
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        let config = Config::default_config();
        assert_eq!(info.hostname, config.hostname);
        assert_eq!(info.message_size, config.limits.message_size);

        let list = c.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, id);
        assert_eq!(list[0].pending, ["someone@remote.example"]);
        assert_eq!(list[0].last_errors[0].to_string(), "451 4.4.1 try later");

        let shown = c.show(id).unwrap();
        assert_eq!(shown.recipients[0].state, RecipientState::Pending);
        assert_eq!(shown.recipients[0].route, "remote someone@remote.example");
        assert!(matches!(&shown.headers,
            crate::queue::listing::Headers::Text(t) if t == "Received: test\r\nSubject: hi\r\nFrom: x@y.example\r\n"));

        c.hold(id).unwrap();
        assert!(c.list().unwrap()[0].held);
        assert_eq!(c.flush(Some(id)).unwrap(), (0, 1));
        c.release(id).unwrap();
        let after = c.list().unwrap();
        assert!(!after[0].held);
        assert_eq!(after[0].next_attempt, 0);

        c.delete(id, false).unwrap();
        assert!(c.list().unwrap().is_empty());
        match c.show(id) {
            Err(ControlError::Refused(f)) => {
                assert_eq!(f.kind, FailureKind::NotFound);
                assert_eq!(f.message, format!("no message {id} in the queue"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.hold(id), Err(ControlError::Refused(_))));
        assert!(matches!(c.flush(Some(id)), Err(ControlError::Refused(_))));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_and_a_reload_are_the_daemons_answers() {
    let d = daemon().await;
    let socket = d.socket.clone();
    let content = b"Subject: s\r\n\r\nbody\r\n";
    let id = blocking(move || {
        let mut c = Client::connect(&socket).unwrap();
        c.submit("", &["a@remote.example".into()], content).unwrap()
    })
    .await;
    assert!(
        d.spool.entry(id).is_some(),
        "queued under the id it answered"
    );

    let socket = d.socket.clone();
    let summary = blocking(move || Client::connect(&socket).unwrap().reload()).await;
    assert_eq!(summary.unwrap(), "ok: summary");
    *d.daemon.reload_answer.lock().unwrap() = Err("tern.toml:3:1: the mistake".into());
    let socket = d.socket.clone();
    match blocking(move || Client::connect(&socket).unwrap().reload()).await {
        Err(ControlError::Refused(f)) => {
            assert_eq!(f.kind, FailureKind::ReloadRefused);
            assert_eq!(f.message, "tern.toml:3:1: the mistake");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_answered_and_the_connection_closed() {
    let d = daemon().await;
    let socket = d.socket.clone();
    blocking(move || {
        for input in [
            &b"hello\n"[..],
            b"{\"op\":\"submit\",\"size\":3}\nabc",
            b"{\"op\":\"hold\",\"id\":\"zz\"}\n{\"op\":\"list\"}\n",
        ] {
            let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            s.write_all(input).unwrap();
            let mut r = std::io::BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with("{\"error\":{\"kind\":"), "{line}");
            // Closed after the error: nothing more is read as a request.
            let mut rest = String::new();
            assert_eq!(r.read_line(&mut rest).unwrap(), 0, "{rest}");
        }
        // An endless line is cut off.
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        let _ = s.write_all(&vec![b'x'; MAX_REQUEST_LINE + 10]);
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        assert!(line.contains("longer than"), "{line}");
    })
    .await;
    // Still serving.
    let socket = d.socket.clone();
    blocking(move || assert!(Client::connect(&socket).unwrap().list().is_ok())).await;
}
