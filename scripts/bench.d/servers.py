"""scripts/bench.d/servers.py — the processes the benchmark starts and how it
stops them (by PID, always), and the two servers under test: a private
Postfix (scripts/postfix-instance) and a tern with a generated config."""

import os
import shutil
import signal
import socket
import subprocess
import time

from common import DOMAIN, POSTFIX_INSTANCE, log
from procfs import tree_cpu

class Registry:
    """Every process this script started, stopped by PID at the end."""

    def __init__(self):
        self.procs = []  # (Popen, name)
        self.postfix_dirs = []

    def popen(self, name, cmd, **kw):
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(cmd, **kw)
        self.procs.append((p, name))
        return p

    def forget(self, p):
        self.procs = [(q, n) for q, n in self.procs if q is not p]

    def cleanup(self):
        for p, name in reversed(self.procs):
            stop_process(p, name, grace=20)
        self.procs = []
        for d in self.postfix_dirs:
            r = subprocess.run([POSTFIX_INSTANCE, "status", d], capture_output=True, text=True)
            if r.returncode == 0:
                log(f"stopping Postfix instance {d}")
                subprocess.run([POSTFIX_INSTANCE, "stop", d], timeout=120)
        self.postfix_dirs = []


def stop_process(p, name, grace=20):
    """SIGTERM, wait (bounded), SIGKILL: by PID only."""
    if p.poll() is not None:
        return p.returncode
    log(f"stopping {name} (pid {p.pid})")
    try:
        p.send_signal(signal.SIGTERM)
        return p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {p.pid}) did not stop in {grace}s; SIGKILL")
        p.kill()
        return p.wait(timeout=10)


REG = Registry()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_dir(path):
    try:
        with os.scandir(path) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def wait_delivered(srv, new_dir, n, t0, timeout):
    """Until `n` messages are in `new_dir` (at most `timeout` s): seconds from
    `t0` (time.monotonic()) to then, or None. Then until the server's queue
    is empty (at most 30 s more), so that the CPU counted afterwards is all
    the work for these messages (queue file removal, Done record)."""
    e2e_s = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count_dir(new_dir) >= n:
            e2e_s = time.monotonic() - t0
            break
        time.sleep(0.02)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not srv.queue_empty():
        time.sleep(0.05)
    return e2e_s


class Trash:
    """Where delivered mail goes between runs. Moving a Maildir's new/ aside
    (one rename) instead of deleting its files matters here: on ext4 without
    a journal (this machine's root), every file created within a minute or
    more of thousands of deletions pays for a scan of the recently deleted
    inodes (ext4 find_inode_bit -> recently_deleted), which would bill the
    benchmark's own cleanup to the next run's deliveries. The trash is
    deleted at the end, or earlier when the disk runs low."""

    def __init__(self, workdir, min_free=8 << 30):
        self.dir = os.path.join(workdir, "trash")
        self.count = 0
        self.min_free = min_free
        self.purged_early = 0

    def retire(self, new_dir):
        """Moves new_dir aside and makes an empty one like it."""
        try:
            st = os.stat(new_dir)
        except FileNotFoundError:
            return
        if count_dir(new_dir) == 0:
            return
        os.makedirs(self.dir, exist_ok=True)
        self.count += 1
        os.rename(new_dir, os.path.join(self.dir, str(self.count)))
        os.mkdir(new_dir, st.st_mode & 0o7777)
        os.chown(new_dir, st.st_uid, st.st_gid)
        if shutil.disk_usage(self.dir).free < self.min_free:
            log("disk space is low: deleting delivered mail of earlier runs now")
            self.purged_early += 1
            self.purge()

    def purge(self):
        shutil.rmtree(self.dir, ignore_errors=True)



class LogCounter:
    """Counts marker strings in a growing log file, reading only what is new."""

    def __init__(self, path, markers):
        self.path, self.offset, self.rest = path, 0, b""
        self.counts = {m: 0 for m in markers}

    def update(self):
        # In pieces of 16 MiB: a million deferrals make a log of hundreds
        # of MiB between two calls.
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                while True:
                    data = f.read(16 << 20)
                    if not data:
                        break
                    self.offset += len(data)
                    data = self.rest + data
                    cut = data.rfind(b"\n") + 1
                    self.rest, data = data[cut:], data[:cut]
                    for m in self.counts:
                        self.counts[m] += data.count(m.encode())
        except FileNotFoundError:
            pass
        return self.counts


class Postfix:
    name = "Postfix"
    key = "postfix"

    def __init__(self, workdir, port, sub="postfix", extra=()):
        """`extra`: more postfix-instance options (e.g. --tls, --set K=V)."""
        self.dir = os.path.join(workdir, sub)
        self.port = port
        self.extra = list(extra)
        self.pid = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        REG.postfix_dirs.append(self.dir)
        r = subprocess.run(
            [POSTFIX_INSTANCE, "start", self.dir, "--port", str(self.port), "--domain", DOMAIN,
             "--hostname", f"postfix.{DOMAIN}", "--user", "bench"] + self.extra,
            capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"postfix-instance start failed:\n{r.stderr}")
        info = dict(line.split("=", 1) for line in r.stdout.split() if "=" in line)
        self.pid = int(info["master_pid"])
        self.maildir = os.path.join(info["maildir_base"], "bench")
        log(f"Postfix master pid {self.pid} on 127.0.0.1:{self.port}")

    def new_dir(self):
        return os.path.join(self.maildir, "new")

    def queue_empty(self):
        q = os.path.join(self.dir, "queue")
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _root, _dirs, files in os.walk(os.path.join(q, sub)):
                if files:
                    return False
        return True

    def stop(self):
        if self.dir in REG.postfix_dirs:
            subprocess.run([POSTFIX_INSTANCE, "stop", self.dir], timeout=120, capture_output=True)
            REG.postfix_dirs.remove(self.dir)

    @staticmethod
    def version():
        r = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"], capture_output=True, text=True)
        return "Postfix " + r.stdout.strip()


TERN_CONFIG = """# Written by scripts/bench.
hostname = "tern.{domain}"
data_dir = "{data}"
domains = ["{domain}"]
postmaster = "bench"

[[listener]]
address = "127.0.0.1:{port}"
role = "mx"
{extra_listeners}
[[user]]
name = "bench"
{extra_users}
[limits]
message_size = "50M"
connections = {connections}
connections_per_ip = {connections}

[relay]
# A DNS server on loopback (scripts/bench.d/dns.py, or a socket that answers
# nothing): tern never asks a real resolver.
nameservers = ["127.0.0.1:{dns_port}"]
{relay_extra}
[mx]
{mx}

[queue]
# Deferred messages (the scaling test's) stay put during the benchmark.
retry_first = "1h"
retry_max = "4h"
"""


MX_CHECKS_OFF = """# The checks on incoming mail need DNS answers this run does not give
# (scripts/bench --checks measures them).
verify_sender_domain = false
authenticate = false"""

MX_CHECKS_ON = """# Every check on incoming mail, against the bench's loopback DNS.
verify_sender_domain = true
authenticate = true"""


class Tern:
    name = "tern"
    key = "tern"

    def __init__(self, binary, workdir, port, dns_port, sub="tern", stuck=False, checks=False,
                 submission_port=None, connections=2000, relay_port=None):
        """`checks`: the incoming-mail checks on (sender domain, SPF, iprev,
        DKIM, DMARC; they need the answers of scripts/bench.d/dns.py), else
        off (the main matrix: its DNS answers nothing)."""
        self.binary, self.port, self.dns_port = binary, port, dns_port
        self.checks = checks
        # A submission listener (STARTTLS, self-signed) too, and the
        # connection budget: for the idle-sessions measurement.
        self.submission_port, self.connections = submission_port, connections
        # Where remote mail goes (the outbound measurement's sinks); else 25.
        self.relay_port = relay_port
        self.dir = os.path.join(workdir, sub)
        self.data = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "tern.toml")
        self.log_path = os.path.join(self.dir, "tern.log")
        self.maildir = os.path.join(self.data, "mail", "bench")
        self.stuck = stuck
        self.proc = None
        self.pid = None
        self.counter = None

    def write_config(self):
        os.makedirs(self.data, exist_ok=True)
        extra = ""
        if self.stuck:
            # Delivery to stuck@ fails (temporarily: its Maildir would be under
            # a plain file), so those messages stay queued.
            blocked = os.path.join(self.dir, "blocked")
            with open(blocked, "w") as f:
                f.write("a file, so that no Maildir can be made under it\n")
            extra = f'\n[[user]]\nname = "stuck"\nmaildir = "{blocked}/stuck"\n'
        with open(self.config, "w") as f:
            f.write(TERN_CONFIG.format(domain=DOMAIN, data=self.data, port=self.port,
                                       dns_port=self.dns_port, extra_users=extra,
                                       connections=self.connections,
                                       relay_extra=(f"port = {self.relay_port}\n" if self.relay_port else ""),
                                       extra_listeners=(f'\n[[listener]]\naddress = "127.0.0.1:'
                                                        f'{self.submission_port}"\nrole = "submission"\n'
                                                        if self.submission_port else ""),
                                       mx=MX_CHECKS_ON if self.checks else MX_CHECKS_OFF))

    def start(self, timeout=600):
        """Starts tern; returns (seconds to the "ready:" log line, seconds to
        the first 220 greeting, CPU seconds used until ready)."""
        if not os.path.exists(self.config):
            self.write_config()
        logf = open(self.log_path, "ab")
        start_offset = logf.tell()
        t0 = time.monotonic()
        self.proc = REG.popen("tern", [self.binary, "serve", "--config", self.config],
                              stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        self.pid = self.proc.pid
        t_ready = t_220 = None
        cpu_ready = None
        deadline = t0 + timeout
        while time.monotonic() < deadline and (t_ready is None or t_220 is None):
            if self.proc.poll() is not None:
                raise RuntimeError(f"tern exited with {self.proc.returncode}; see {self.log_path}")
            if t_ready is None:
                with open(self.log_path, "rb") as f:
                    f.seek(start_offset)
                    if b"ready:" in f.read():
                        t_ready = time.monotonic() - t0
                        cpu_ready = tree_cpu(self.pid)
            if t_220 is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                        s.settimeout(5)
                        if s.recv(512).startswith(b"220"):
                            t_220 = time.monotonic() - t0
                        try:
                            s.sendall(b"QUIT\r\n")
                        except OSError:
                            pass
                except OSError:
                    pass
            time.sleep(0.005)
        if t_ready is None or t_220 is None:
            raise RuntimeError(f"tern did not become ready within {timeout}s; see {self.log_path}")
        self.counter = LogCounter(self.log_path, ["status=queued", " removed", "status=deferred"])
        self.counter.offset = os.path.getsize(self.log_path)
        log(f"tern pid {self.pid} on 127.0.0.1:{self.port} (ready after {t_ready:.3f}s)")
        return t_ready, t_220, cpu_ready

    def ready_line(self):
        with open(self.log_path, "rb") as f:
            lines = [l for l in f.read().decode(errors="replace").splitlines() if "ready:" in l]
        return lines[-1] if lines else ""

    def new_dir(self):
        return os.path.join(self.maildir, "new")

    def queue_empty(self):
        c = self.counter.update()
        return c["status=queued"] <= c[" removed"]

    def stop(self, grace=60):
        if self.proc is None:
            return None
        t0 = time.monotonic()
        stop_process(self.proc, "tern", grace=grace)
        REG.forget(self.proc)
        self.proc = None
        return time.monotonic() - t0

    def version(self):
        r = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return r.stdout.strip() or "tern (version unknown)"
