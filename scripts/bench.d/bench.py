#!/usr/bin/python3
"""scripts/bench.d/bench.py — the body of scripts/bench: tern side by side with
Postfix on loopback, as issue 5 asks. See scripts/bench for the overview.

Method (also written into the results file):
  * Both servers accept mail for bench.test on 127.0.0.1 (their own ports) and
    deliver bench@bench.test into a Maildir. Postfix is a private instance made
    by scripts/postfix-instance (queue fsync'd as always, virtual(8) delivery);
    tern runs `tern serve` with a generated config (250 only after the group
    commit's fdatasync; Maildir tmp -> fsync -> new -> fsync dir).
  * Load: Postfix's smtp-source with the same arguments for both, runs
    alternating Postfix, tern, Postfix, tern ... (>= 3 each; the median of the
    runs is reported). `new` = one connection per message, `reuse` = smtp-source
    -d (all of a session's messages over one connection).
  * accept msg/s = N / wall time of smtp-source (first connect to last QUIT).
  * latency = MAIL FROM written -> reply to the end of DATA read, for every
    message, measured inside smtp-source by an LD_PRELOAD shim (latency.c);
    p50/p99 over the run's N messages.
  * end-to-end = from smtp-source's start until N files are in the Maildir's
    new/ (polled every 20 ms); shown as msg/s (N / time) and seconds.
  * memory = sum of VmRSS (and of PSS, which splits shared pages fairly) over
    the server's process tree (Postfix: master and all its children; tern: one
    process), sampled from /proc every 100 ms; peak over the run.
  * CPU = utime+stime (+ cutime+cstime: children already reaped by the master)
    of the tree from /proc/PID/stat before and after the run (which ends when
    everything is delivered), per 1,000 messages. disk KiB/msg likewise from
    /proc/PID/io write_bytes.
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")
DOMAIN = "bench.test"
SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX_INSTANCE = os.path.join(REPO, "scripts", "postfix-instance")


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


# --- /proc ----------------------------------------------------------------------


def proc_stats():
    """pid -> fields of /proc/PID/stat after the command name (index 0 = state,
    1 = ppid, 11 = utime, 12 = stime, 13 = cutime, 14 = cstime)."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        table[int(name)] = data[data.rindex(b")") + 2 :].split()
    return table


def tree_pids(root, table=None):
    """root and all its descendants."""
    table = table if table is not None else proc_stats()
    children = {}
    for pid, fields in table.items():
        children.setdefault(int(fields[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def tree_cpu(root):
    """CPU seconds of the tree, reaped children included."""
    table = proc_stats()
    ticks = 0
    for pid in tree_pids(root, table):
        f = table[pid]
        ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / HZ


def tree_write_bytes(root):
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    if line.startswith("write_bytes:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def pid_rss(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def pid_pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory(root):
    pids = tree_pids(root)
    return sum(pid_rss(p) for p in pids), sum(pid_pss(p) for p in pids), len(pids)


def thread_cpu(pid):
    """CPU seconds by thread name of one process (its live threads)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        name = data[data.index(b"(") + 1 : data.rindex(b")")].decode(errors="replace")
        fields = data[data.rindex(b")") + 2 :].split()
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / HZ
    return out


class Sampler(threading.Thread):
    """Samples the tree's memory every `interval` s; keeps the peaks."""

    def __init__(self, root, interval=0.1):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.stop_event = threading.Event()
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.samples = 0

    def run(self):
        while not self.stop_event.is_set():
            rss, pss, n = tree_memory(self.root)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, n)
            self.samples += 1
            self.stop_event.wait(self.interval)

    def finish(self):
        self.stop_event.set()
        self.join(timeout=5)
        rss, pss, n = tree_memory(self.root)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        return self


# --- processes we start ----------------------------------------------------------


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


def greeting(port, timeout=2.0):
    """True when 127.0.0.1:port answers 220."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            line = s.recv(512)
            try:
                s.sendall(b"QUIT\r\n")
                s.recv(512)
            except OSError:
                pass
            return line.startswith(b"220")
    except OSError:
        return False


def count_dir(path):
    try:
        with os.scandir(path) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def clear_dir(path):
    try:
        with os.scandir(path) as it:
            for e in it:
                os.unlink(e.path)
    except FileNotFoundError:
        pass


class LogCounter:
    """Counts marker strings in a growing log file, reading only what is new."""

    def __init__(self, path, markers):
        self.path, self.offset, self.rest = path, 0, b""
        self.counts = {m: 0 for m in markers}

    def update(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.counts
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest, data = data[cut:], data[:cut]
        for m in self.counts:
            self.counts[m] += data.count(m.encode())
        return self.counts


# --- the two servers --------------------------------------------------------------


class Postfix:
    name = "Postfix"
    key = "postfix"

    def __init__(self, workdir, port):
        self.dir = os.path.join(workdir, "postfix")
        self.port = port
        self.pid = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        REG.postfix_dirs.append(self.dir)
        r = subprocess.run(
            [POSTFIX_INSTANCE, "start", self.dir, "--port", str(self.port), "--domain", DOMAIN,
             "--hostname", f"postfix.{DOMAIN}", "--user", "bench"],
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

[[user]]
name = "bench"
{extra_users}
[limits]
message_size = "50M"
connections = 2000
connections_per_ip = 2000

[relay]
# A loopback UDP socket that answers nothing: tern never asks a real resolver.
nameservers = ["127.0.0.1:{dns_port}"]

[queue]
# Deferred messages (the scaling test's) stay put during the benchmark.
retry_first = "1h"
retry_max = "4h"
"""


class Tern:
    name = "tern"
    key = "tern"

    def __init__(self, binary, workdir, port, dns_port, sub="tern", stuck=False):
        self.binary, self.port, self.dns_port = binary, port, dns_port
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
                                       dns_port=self.dns_port, extra_users=extra))

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


# --- one run ----------------------------------------------------------------------


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def smtp_source(args, port, n, size, conc, reuse, rcpt, latfile, timeout):
    """Runs smtp-source; returns (ok, seconds, stderr)."""
    cmd = [SMTP_SOURCE, "-s", str(conc), "-m", str(n), "-l", str(size),
           "-M", "client.test", "-f", "load@client.test", "-t", rcpt]
    if reuse:
        cmd.append("-d")
    cmd.append(f"127.0.0.1:{port}")
    env = dict(os.environ)
    if latfile:
        env["LD_PRELOAD"] = args.shim
        env["BENCH_LATENCY_FILE"] = latfile
    t0 = time.monotonic()
    p = REG.popen("smtp-source", cmd, env=env, stdout=subprocess.DEVNULL,
                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(p, "smtp-source", grace=5)
        REG.forget(p)
        return False, time.monotonic() - t0, f"smtp-source timed out after {timeout}s"
    REG.forget(p)
    return p.returncode == 0, time.monotonic() - t0, err.decode(errors="replace").strip()


def read_latencies(path):
    ok, failed = [], 0
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 3:
                    continue
                if parts[2] == "250":
                    ok.append(float(parts[1]))
                else:
                    failed += 1
    except FileNotFoundError:
        pass
    ok.sort()
    return ok, failed


def run_once(args, srv, size, reuse, conc, n, tag):
    """One measured run against one server; returns a dict of figures."""
    new_dir = srv.new_dir()
    clear_dir(new_dir)
    subprocess.run(["sync"], timeout=300)
    time.sleep(0.3)
    latfile = os.path.join(args.workdir, f"lat-{tag}.txt")
    cpu0 = tree_cpu(srv.pid)
    wb0 = tree_write_bytes(srv.pid)
    threads0 = thread_cpu(srv.pid) if srv.key == "tern" else {}
    sampler = Sampler(srv.pid)
    sampler.start()
    timeout = 120 + n * max(size, 4096) / 4096 / 20  # a floor of ~20 msg/s
    t_start = time.monotonic()
    ok, accept_s, err = smtp_source(args, srv.port, n, size, conc, reuse,
                                    f"bench@{DOMAIN}", latfile, timeout)
    # End to end: until all N are in new/ (bounded).
    e2e_s = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count_dir(new_dir) >= n:
            e2e_s = time.monotonic() - t_start
            break
        time.sleep(0.02)
    # Let the server finish its bookkeeping (queue file removal, Done record)
    # so the CPU counted is all the work for these messages.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not srv.queue_empty():
        time.sleep(0.05)
    cpu1 = tree_cpu(srv.pid)
    wb1 = tree_write_bytes(srv.pid)
    threads1 = thread_cpu(srv.pid) if srv.key == "tern" else {}
    sampler.finish()
    lats, refused = read_latencies(latfile)
    delivered = count_dir(new_dir)
    r = {
        "server": srv.key, "size": size, "reuse": reuse, "conc": conc, "n": n,
        "ok": ok and len(lats) == n and e2e_s is not None,
        "smtp_source_error": err if not ok else "",
        "accepted": len(lats), "refused": refused, "delivered": delivered,
        "accept_s": accept_s, "accept_rate": len(lats) / accept_s if accept_s > 0 else None,
        "p50_ms": percentile(lats, 50) * 1000 if lats else None,
        "p99_ms": percentile(lats, 99) * 1000 if lats else None,
        "max_ms": lats[-1] * 1000 if lats else None,
        "e2e_s": e2e_s, "e2e_rate": n / e2e_s if e2e_s else None,
        "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss, "peak_procs": sampler.peak_procs,
        "cpu_s": cpu1 - cpu0, "cpu_per_1k": (cpu1 - cpu0) / n * 1000,
        "write_kib_per_msg": (wb1 - wb0) / 1024 / n,
    }
    if threads1:
        r["threads_cpu"] = {k: round(v - threads0.get(k, 0), 3) for k, v in threads1.items()
                            if v - threads0.get(k, 0) > 0}
    if not args.keep_latency:
        try:
            os.unlink(latfile)
        except OSError:
            pass
    status = "ok" if r["ok"] else f"FAILED ({r['accepted']} accepted, {refused} refused, {delivered} delivered; {err[:200]})"
    log(f"  {srv.name:7} {fmt_size(size)} {'reuse' if reuse else 'new':5} c={conc:<3} "
        f"accept {fmt(r['accept_rate'], 0)} msg/s, p50 {fmt(r['p50_ms'], 2)} ms, "
        f"p99 {fmt(r['p99_ms'], 2)} ms, e2e {fmt(e2e_s, 2)} s, peak RSS {mib(r['peak_rss'])} MiB, "
        f"CPU {r['cpu_per_1k']:.2f} s/1k: {status}")
    return r


# --- formatting -------------------------------------------------------------------


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def mib(b):
    return "—" if b is None else f"{b / 1048576:.1f}"


def fmt_size(size):
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def ratio(t, p):
    if t is None or p is None or p == 0:
        return None
    return t / p


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None and r["ok"]]
    return statistics.median(vals) if vals else None


def parse_size(s):
    s = s.strip().lower()
    mult = 1
    for suffix, m in (("kib", 1024), ("k", 1024), ("mib", 1048576), ("m", 1048576)):
        if s.endswith(suffix):
            s, mult = s[: -len(suffix)], m
            break
    return int(float(s) * mult)


# --- scaling (tern with a held-back queue) ------------------------------------------


def wait_deferred(srv, target, timeout):
    """Until `target` deferrals were logged (every queued message had its one
    failed attempt, so the scheduler is quiet again)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.counter.update()["status=deferred"] >= target:
            return True
        time.sleep(0.1)
    return False


def scaling(args, workdir, dns_port):
    """Accept rate and memory with `levels` messages queued (to stuck@, whose
    delivery fails temporarily, so they stay), and recovery time at each."""
    port = free_port()
    srv = Tern(args.tern, workdir, port, dns_port, sub="tern-scale", stuck=True)
    srv.write_config()
    srv.start()
    rcpt = f"stuck@{DOMAIN}"
    probe = args.scale_probe
    rows = []
    time.sleep(1)
    queued, deferred_total = 0, 0

    def accept_probe(level_label):
        nonlocal queued
        latfile = os.path.join(workdir, "lat-scale.txt")
        subprocess.run(["sync"], timeout=300)
        ok, secs, err = smtp_source(args, port, probe, 4096, 10, False, rcpt, latfile, 600)
        lats, _ = read_latencies(latfile)
        queued += len(lats)
        if not wait_deferred(srv, queued, 600):
            log("scaling: the scheduler did not settle (deferrals) in 600 s")
        rss, pss, _ = tree_memory(srv.pid)
        row = {"queued_before": level_label, "probe": probe, "ok": ok and len(lats) == probe,
               "accept_rate": len(lats) / secs, "p50_ms": percentile(lats, 50) * 1000 if lats else None,
               "p99_ms": percentile(lats, 99) * 1000 if lats else None,
               "rss_after": rss, "pss_after": pss, "queued_after": queued}
        log(f"scaling: {level_label} queued: accept {row['accept_rate']:.0f} msg/s (c=10, new, 4 KiB), "
            f"p99 {fmt(row['p99_ms'], 2)} ms, RSS {mib(rss)} MiB with {queued} queued")
        return row

    rows.append(accept_probe(0))
    for level in args.scale:
        fill = level - queued
        if fill > 0:
            log(f"scaling: filling to {level} queued messages ({fill} more, c=20, reuse, 4 KiB)")
            ok, secs, err = smtp_source(args, port, fill, 4096, 20, True, rcpt, None, 120 + fill / 20)
            if not ok:
                raise RuntimeError(f"scaling fill failed: {err}")
            queued += fill
            fill_rate = fill / secs
            if not wait_deferred(srv, queued, 120 + fill / 50):
                log("scaling: the scheduler did not settle after the fill")
        else:
            fill_rate = None
        rss_level, pss_level, _ = tree_memory(srv.pid)
        row = accept_probe(queued)
        row["fill_rate"] = fill_rate
        row["rss_at_level"], row["pss_at_level"] = rss_level, pss_level
        # Recovery: stop, start again, time to "ready:" and to the 220.
        stop_s = srv.stop()
        subprocess.run(["sync"], timeout=300)
        t_ready, t_220, cpu_ready = srv.start(timeout=900)
        time.sleep(1)
        rss_rec, pss_rec, _ = tree_memory(srv.pid)
        row.update({"stop_s": stop_s, "recovery_ready_s": t_ready, "recovery_220_s": t_220,
                    "recovery_cpu_s": cpu_ready, "rss_after_recovery": rss_rec,
                    "ready_line": srv.ready_line()})
        srv.counter.counts["status=deferred"] = queued  # a fresh log position
        log(f"scaling: {queued} queued: restart ready after {t_ready:.3f}s (220 after {t_220:.3f}s), "
            f"RSS {mib(rss_rec)} MiB; {row['ready_line']}")
        rows.append(row)
    srv.stop()
    spool_bytes = 0
    for root, _dirs, files in os.walk(os.path.join(srv.data, "spool")):
        spool_bytes += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return rows, spool_bytes


# --- main -------------------------------------------------------------------------


def machine_info(workdir):
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            models = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        info["cpu"] = f"{len(models)} × {models[0]}" if models else "?"
    except OSError:
        info["cpu"] = "?"
    with open("/proc/meminfo") as f:
        info["memory"] = f.readline().split(":", 1)[1].strip()
    info["kernel"] = platform.release()
    try:
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        info["debian"] = "?"
    r = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", workdir],
                       capture_output=True, text=True)
    info["filesystem"] = r.stdout.strip()
    info["load_at_start"] = open("/proc/loadavg").read().split()[:3]
    return info


def git_info():
    r = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    head = r.stdout.strip() or "?"
    d = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                       capture_output=True, text=True)
    return head + (" (+ uncommitted changes in src/)" if d.stdout.strip() else "")


def build_tern():
    log("building tern (scripts/build)")
    r = subprocess.run([os.path.join(REPO, "scripts", "build")], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError("scripts/build failed")
    return r.stdout.strip().splitlines()[-1]


def build_shim(outdir):
    so = os.path.join(outdir, "latency.so")
    src = os.path.join(HERE, "latency.c")
    if not os.path.exists(so) or os.path.getmtime(so) < os.path.getmtime(src):
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise RuntimeError("a C compiler (cc) is needed for the latency shim: apt-get install gcc")
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", so, src, "-ldl"], check=True)
    return so


def idle_memory(root, seconds=1.0):
    vals = []
    for _ in range(5):
        vals.append(tree_memory(root))
        time.sleep(seconds / 5)
    return (statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals),
            max(v[2] for v in vals))


def perf_profile(args, tern_srv, outdir):
    """One extra tern run (4 KiB, new connections, c=10) under perf record."""
    perf = shutil.which("perf")
    if not perf:
        log("perf not found; no profile")
        return None
    data = os.path.join(args.workdir, "perf.data")
    p = REG.popen("perf", [perf, "record", "-e", "cpu-clock", "-F", "999", "-p",
                           str(tern_srv.pid), "-o", data],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    run_once(args, tern_srv, 4096, False, 10, args.messages, "perf")
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop_process(p, "perf", grace=5)
    REG.forget(p)
    out = os.path.join(outdir, "perf-tern.txt")
    with open(out, "w") as f:
        subprocess.run([perf, "report", "-i", data, "--stdio", "--no-children", "--sort", "comm,dso,symbol",
                        "--percent-limit", "0.5"], stdout=f, stderr=subprocess.DEVNULL, timeout=600)
    log(f"perf report written to {out}")
    return out


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tern", help="tern binary to use (default: build with scripts/build)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 200 messages, 1 run each, scaling at 1,000 and 5,000")
    ap.add_argument("--messages", "-n", type=int, help="messages per run (default 5000; quick 200)")
    ap.add_argument("--runs", type=int, help="runs per server and cell (default 3; quick 1)")
    ap.add_argument("--concurrency", default="1,10,50", help="smtp-source sessions (default 1,10,50)")
    ap.add_argument("--sizes", default="4k,100k", help="message payload sizes (default 4k,100k)")
    ap.add_argument("--modes", default="new,reuse",
                    help="new = one connection per message, reuse = smtp-source -d (default both)")
    ap.add_argument("--scale", help="queued levels for the scaling test (default 10000,100000; quick 1000,5000)")
    ap.add_argument("--scale-probe", type=int, help="messages per accept probe in the scaling test (default 2000)")
    ap.add_argument("--no-main", action="store_true", help="skip the side-by-side matrix")
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling test")
    ap.add_argument("--perf", action="store_true", help="also profile tern (perf record) during one extra run")
    ap.add_argument("--workdir", help="scratch directory (default: a new /var/tmp/tern-bench.*; removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--keep-latency", action="store_true", help="keep the per-run latency files")
    ap.add_argument("--out", default=os.path.join(REPO, "target", "bench"), help="results directory")
    args = ap.parse_args()

    args.messages = args.messages or (200 if args.quick else 5000)
    args.runs = args.runs or (1 if args.quick else 3)
    args.conc = [int(c) for c in args.concurrency.split(",") if c]
    args.size_list = [parse_size(s) for s in args.sizes.split(",") if s]
    args.mode_list = [m.strip() for m in args.modes.split(",") if m]
    if any(m not in ("new", "reuse") for m in args.mode_list):
        ap.error("--modes takes new and/or reuse")
    args.scale = [int(x) for x in (args.scale or ("1000,5000" if args.quick else "10000,100000")).split(",")]
    args.scale_probe = args.scale_probe or (200 if args.quick else 2000)

    if os.geteuid() != 0:
        sys.exit("bench: run as root (Postfix's master needs it)")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    started = time.time()
    os.makedirs(args.out, exist_ok=True)
    made_workdir = False
    dns = None
    results = {"runs": [], "argv": sys.argv[1:]}
    try:
        subprocess.run([POSTFIX_INSTANCE, "install"], check=True, timeout=900)
        if not os.access(SMTP_SOURCE, os.X_OK):
            raise RuntimeError(f"{SMTP_SOURCE} is missing (it comes with Debian's postfix package)")
        args.tern = os.path.abspath(args.tern) if args.tern else build_tern()
        args.shim = build_shim(args.out)
        if args.workdir:
            os.makedirs(args.workdir, exist_ok=True)
        else:
            args.workdir = tempfile.mkdtemp(prefix="tern-bench.", dir="/var/tmp")
            made_workdir = True
        os.chmod(args.workdir, 0o755)
        log(f"scratch directory {args.workdir}")
        # A loopback UDP socket that never answers: tern's resolver points here.
        dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dns.bind(("127.0.0.1", 0))
        dns_port = dns.getsockname()[1]

        pf = Postfix(args.workdir, free_port())
        tn = Tern(args.tern, args.workdir, free_port(), dns_port)
        results["machine"] = machine_info(args.workdir)
        results["versions"] = {"postfix": Postfix.version(), "tern": tn.version(),
                               "tern_binary": args.tern, "repo_head": git_info()}
        results["params"] = {"messages": args.messages, "runs": args.runs, "concurrency": args.conc,
                             "sizes": args.size_list, "modes": args.mode_list, "scale": args.scale,
                             "scale_probe": args.scale_probe}
        log(f"{results['versions']['postfix']} vs {results['versions']['tern']} ({args.tern})")

        if not args.no_main:
            pf.start()
            tn.start()
            time.sleep(2)
            results["idle"] = {"postfix": idle_memory(pf.pid), "tern": idle_memory(tn.pid)}
            log("warm-up: 200 messages to each")
            for srv in (pf, tn):
                run_once(args, srv, 4096, False, 10, 200, f"warmup-{srv.key}")
            cells = [(size, mode == "reuse", c) for size in args.size_list
                     for mode in args.mode_list for c in args.conc]
            for ci, (size, reuse, c) in enumerate(cells, 1):
                log(f"cell {ci}/{len(cells)}: {fmt_size(size)}, {'reuse' if reuse else 'new'}, c={c}, "
                    f"N={args.messages}, {args.runs} run(s) each, alternating")
                for run in range(args.runs):
                    for srv in (pf, tn):
                        r = run_once(args, srv, size, reuse, c, args.messages,
                                     f"{srv.key}-{size}-{int(reuse)}-{c}-{run}")
                        r["run"] = run
                        results["runs"].append(r)
            time.sleep(5)
            results["idle_after"] = {"postfix": idle_memory(pf.pid), "tern": idle_memory(tn.pid)}
            if args.perf:
                results["perf_report"] = perf_profile(args, tn, args.out)
            tn.stop()
            pf.stop()
        if not args.no_scaling:
            rows, spool_bytes = scaling(args, args.workdir, dns_port)
            results["scaling"] = rows
            results["scaling_spool_bytes"] = spool_bytes
        results["machine"]["load_at_end"] = open("/proc/loadavg").read().split()[:3]
        results["duration_s"] = time.time() - started
        results["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        write_results(args, results)
    except Interrupted as e:
        log(f"interrupted ({e}); cleaning up")
        return 130
    except Exception as e:  # noqa: BLE001 — report, clean up, fail
        log(f"error: {e}")
        if results["runs"]:
            results["partial"] = True
            results["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            results["duration_s"] = time.time() - started
            try:
                write_results(args, results)
            except Exception as e2:  # noqa: BLE001
                log(f"could not write partial results: {e2}")
        raise
    finally:
        # Ctrl-C again during the cleanup must not leave processes behind.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        REG.cleanup()
        if dns:
            dns.close()
        if made_workdir and not args.keep and args.workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)
        elif args.workdir:
            log(f"scratch directory kept: {args.workdir}")
    return 0


# --- the report -------------------------------------------------------------------


def write_results(args, res):
    lines = []
    P = lines.append
    P("# tern vs Postfix — scripts/bench results")
    P("")
    P(f"- date: {res.get('date')}, duration {res.get('duration_s', 0) / 60:.1f} min"
      + (" — PARTIAL (interrupted by an error)" if res.get("partial") else ""))
    m = res.get("machine", {})
    P(f"- machine: {m.get('cpu')}, {m.get('memory')} RAM, Linux {m.get('kernel')}, Debian {m.get('debian')}; "
      f"filesystem: {m.get('filesystem')}; load average at start {' '.join(m.get('load_at_start', []))}, "
      f"at end {' '.join(m.get('load_at_end', []))}")
    v = res.get("versions", {})
    P(f"- versions: {v.get('postfix')}; {v.get('tern')} (binary {v.get('tern_binary')}, repo HEAD {v.get('repo_head')})")
    p = res.get("params", {})
    P(f"- parameters: N = {p.get('messages')} messages per run, {p.get('runs')} run(s) per server and cell, "
      f"alternating Postfix/tern; concurrency {p.get('concurrency')}; payload sizes "
      f"{[fmt_size(s) for s in p.get('sizes', [])]}; modes {p.get('modes')} "
      "(new = one connection per message, reuse = smtp-source -d)")
    P(f"- command: `scripts/bench {' '.join(res.get('argv', []))}`")
    P("- load generator: `smtp-source -s C -m N -l SIZE -M client.test -f load@client.test "
      f"-t bench@{DOMAIN} [-d] 127.0.0.1:PORT` (Postfix {v.get('postfix', '')[8:]}'s), same for both")
    P("")
    P("Figures are medians over the runs. Ratios are tern/Postfix: above 1 is better for tern for "
      "rates, below 1 is better for latency, memory and CPU. Only ratios measured in the same run "
      "count: the machine is shared and noisy.")
    P("")
    runs = res.get("runs", [])
    cells = []
    for r in runs:
        key = (r["size"], r["reuse"], r["conc"])
        if key not in cells:
            cells.append(key)
    summary = []
    if cells:
        P("## Throughput and latency")
        P("")
        P("| size | conn | c | accept msg/s Postfix | tern | ratio | p50 ms Postfix | tern | ratio "
          "| p99 ms Postfix | tern | ratio | end-to-end msg/s Postfix | tern | ratio | e2e s Postfix | tern |")
        P("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for size, reuse, c in cells:
            cell = [r for r in runs if (r["size"], r["reuse"], r["conc"]) == (size, reuse, c)]
            pr = [r for r in cell if r["server"] == "postfix"]
            tr = [r for r in cell if r["server"] == "tern"]
            s = {"size": size, "reuse": reuse, "conc": c}
            for k in ("accept_rate", "p50_ms", "p99_ms", "e2e_rate", "e2e_s", "peak_rss", "peak_pss",
                      "cpu_per_1k", "write_kib_per_msg"):
                s[k] = (med(pr, k), med(tr, k))
            s["failed"] = (sum(not r["ok"] for r in pr), sum(not r["ok"] for r in tr))
            summary.append(s)
            a, l50, l99, e, es = s["accept_rate"], s["p50_ms"], s["p99_ms"], s["e2e_rate"], s["e2e_s"]
            flag = "" if s["failed"] == (0, 0) else f" (failed runs: Postfix {s['failed'][0]}, tern {s['failed'][1]})"
            P(f"| {fmt_size(size)} | {'reuse' if reuse else 'new'}{flag} | {c} "
              f"| {fmt(a[0], 0)} | {fmt(a[1], 0)} | {fmt_ratio(ratio(a[1], a[0]))} "
              f"| {fmt(l50[0], 2)} | {fmt(l50[1], 2)} | {fmt_ratio(ratio(l50[1], l50[0]))} "
              f"| {fmt(l99[0], 2)} | {fmt(l99[1], 2)} | {fmt_ratio(ratio(l99[1], l99[0]))} "
              f"| {fmt(e[0], 0)} | {fmt(e[1], 0)} | {fmt_ratio(ratio(e[1], e[0]))} "
              f"| {fmt(es[0], 2)} | {fmt(es[1], 2)} |")
        P("")
        P("## Memory, CPU and disk")
        P("")
        P("| size | conn | c | peak RSS MiB Postfix (tree) | tern | ratio | peak PSS MiB Postfix | tern | ratio "
          "| CPU s/1k msg Postfix | tern | ratio | disk write KiB/msg Postfix | tern |")
        P("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for s in summary:
            rss, pss, cpu, wk = s["peak_rss"], s["peak_pss"], s["cpu_per_1k"], s["write_kib_per_msg"]
            P(f"| {fmt_size(s['size'])} | {'reuse' if s['reuse'] else 'new'} | {s['conc']} "
              f"| {mib(rss[0])} | {mib(rss[1])} | {fmt_ratio(ratio(rss[1], rss[0]))} "
              f"| {mib(pss[0])} | {mib(pss[1])} | {fmt_ratio(ratio(pss[1], pss[0]))} "
              f"| {fmt(cpu[0], 2)} | {fmt(cpu[1], 2)} | {fmt_ratio(ratio(cpu[1], cpu[0]))} "
              f"| {fmt(wk[0], 1)} | {fmt(wk[1], 1)} |")
        P("")
        for label, key in (("Idle, after start", "idle"), ("Idle, 5 s after the last run", "idle_after")):
            idle = res.get(key)
            if idle:
                pf, tn = idle["postfix"], idle["tern"]
                P(f"- {label}: Postfix tree {mib(pf[0])} MiB RSS / {mib(pf[1])} MiB PSS in {pf[2]} processes; "
                  f"tern {mib(tn[0])} MiB RSS / {mib(tn[1])} MiB PSS (ratio RSS {fmt_ratio(ratio(tn[0], pf[0]))})")
        P("")
        # Where tern's CPU went, by thread name, over all its runs.
        threads, n_msgs = {}, 0
        for r in runs:
            if r["server"] == "tern" and r.get("threads_cpu"):
                n_msgs += r["n"]
                for k, val in r["threads_cpu"].items():
                    threads[k] = threads.get(k, 0) + val
        if threads and n_msgs:
            parts = ", ".join(f"{k} {v / n_msgs * 1000:.2f}" for k, v in
                              sorted(threads.items(), key=lambda kv: -kv[1]))
            P(f"- tern CPU by thread name over all its runs (s per 1,000 messages; live threads only): {parts}")
            P("")
        P("## Targets (issue 5 §2)")
        P("")
        P(targets(summary))
        P("")
    if res.get("scaling"):
        P("## Scaling: tern with a queue held back (issue 5 §3)")
        P("")
        P(f"Messages to stuck@{DOMAIN}, whose Maildir cannot be created (it would lie under a plain file), "
          "fail temporarily once each and stay queued (retry in 1 h). At each level: an accept probe of "
          f"{res['params']['scale_probe']} messages (4 KiB, c=10, one connection per message), the RSS, then a "
          "restart: time from exec to the \"ready:\" log line and to the first 220 greeting (spool recovery "
          "happens before the listeners are bound).")
        P("")
        P("| queued | accept msg/s | p99 ms | fill msg/s (c=20, reuse) | RSS MiB at level | RSS after probe "
          "| queued at restart | stop s | recovery to ready s | to 220 s | recovery CPU s | RSS after recovery MiB |")
        P("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for row in res["scaling"]:
            restart = f"{row['queued_after']:,}" if row.get("recovery_ready_s") else "—"
            P(f"| {row['queued_before']:,} | {fmt(row['accept_rate'], 0)} | {fmt(row.get('p99_ms'), 2)} "
              f"| {fmt(row.get('fill_rate'), 0)} | {mib(row.get('rss_at_level'))} | {mib(row['rss_after'])} "
              f"| {restart} | {fmt(row.get('stop_s'), 2)} | {fmt(row.get('recovery_ready_s'), 3)} "
              f"| {fmt(row.get('recovery_220_s'), 3)} | {fmt(row.get('recovery_cpu_s'), 2)} "
              f"| {mib(row.get('rss_after_recovery'))} |")
        rec = [r for r in res["scaling"] if r.get("recovery_ready_s")]
        if len(rec) >= 2:
            a, b = rec[0], rec[-1]
            qa, qb = a["queued_after"], b["queued_after"]
            grow = b["recovery_ready_s"] / a["recovery_ready_s"] if a["recovery_ready_s"] else None
            verdict = ("looks linear" if grow is not None and grow <= 1.5 * qb / qa
                       else "grows faster than linear — look at it")
            P("")
            P(f"Recovery of {qb:,} vs {qa:,} queued: {b['recovery_ready_s']:.3f} s vs {a['recovery_ready_s']:.3f} s, "
              f"×{grow:.1f} for ×{qb / qa:.1f} the messages: {verdict}. Per 1,000 queued: "
              f"{a['recovery_ready_s'] / qa * 1000 * 1000:.1f} ms vs {b['recovery_ready_s'] / qb * 1000 * 1000:.1f} ms; "
              f"marginal cost {(b['recovery_ready_s'] - a['recovery_ready_s']) / max(1, qb - qa) * 1e6:.1f} ms "
              "per 1,000 more. "
              f"Memory per queued message (RSS after recovery, difference between the levels): "
              f"{(b['rss_after_recovery'] - a['rss_after_recovery']) / max(1, qb - qa):,.0f} bytes.")
            P(f"Spool on disk at the end: {res.get('scaling_spool_bytes', 0) / 1048576:.0f} MiB.")
        P("")
    if runs:
        P("## Every run")
        P("")
        P("accept msg/s · p99 ms · end-to-end s of each run, in the order they ran (Postfix, tern, Postfix, tern ...).")
        P("")
        P("| size | conn | c | Postfix runs | tern runs |")
        P("|---|---|--:|---|---|")
        for size, reuse, c in cells:
            cell = [r for r in runs if (r["size"], r["reuse"], r["conc"]) == (size, reuse, c)]
            def one(r):
                if not r["ok"]:
                    return "FAILED"
                return f"{fmt(r['accept_rate'], 0)} · {fmt(r['p99_ms'], 1)} · {fmt(r['e2e_s'], 2)}"
            P(f"| {fmt_size(size)} | {'reuse' if reuse else 'new'} | {c} "
              f"| {'; '.join(one(r) for r in cell if r['server'] == 'postfix')} "
              f"| {'; '.join(one(r) for r in cell if r['server'] == 'tern')} |")
        P("")
    P("## Method")
    P("")
    P(textwrap.dedent((__doc__ or "").split("Method (also written into the results file):", 1)[-1]).strip())
    P("")
    text = "\n".join(lines)
    md = os.path.join(args.out, "results.md")
    with open(md, "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(text)
    log(f"results written to {md} and results.json")


def targets(summary):
    out = []
    checks = {"accept rate (≥3× at c≥10, ≥1× at c=1)": [], "p99 latency ≤ Postfix": [],
              "end-to-end ≥ 2× Postfix": [], "peak RSS ≤ Postfix tree": []}
    for s in summary:
        label = f"{fmt_size(s['size'])} {'reuse' if s['reuse'] else 'new'} c={s['conc']}"
        a = ratio(s["accept_rate"][1], s["accept_rate"][0])
        need = 1.0 if s["conc"] <= 1 else 3.0
        checks["accept rate (≥3× at c≥10, ≥1× at c=1)"].append((label, a, a is not None and a >= need, f"{fmt_ratio(a)} (need {need:.0f}×)"))
        l = ratio(s["p99_ms"][1], s["p99_ms"][0])
        checks["p99 latency ≤ Postfix"].append((label, l, l is not None and l <= 1.0,
                                                f"{fmt(s['p99_ms'][1], 2)} vs {fmt(s['p99_ms'][0], 2)} ms"))
        e = ratio(s["e2e_rate"][1], s["e2e_rate"][0])
        checks["end-to-end ≥ 2× Postfix"].append((label, e, e is not None and e >= 2.0, fmt_ratio(e)))
        m = ratio(s["peak_rss"][1], s["peak_rss"][0])
        checks["peak RSS ≤ Postfix tree"].append((label, m, m is not None and m <= 1.0,
                                                  f"{mib(s['peak_rss'][1])} vs {mib(s['peak_rss'][0])} MiB"))
    for name, items in checks.items():
        met = sum(1 for i in items if i[2])
        missed = [f"{i[0]}: {i[3]}" for i in items if not i[2]]
        verdict = "MET" if met == len(items) else f"NOT MET in {len(items) - met} of {len(items)} cells"
        out.append(f"- **{name}**: {verdict}" + (f" — {'; '.join(missed)}" if missed else ""))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
