"""scripts/bench.d/outbound.py — `scripts/bench --outbound N`: how fast tern and
Postfix deliver N queued messages (4 KiB) to other servers, smtp-sink processes
on loopback addresses standing in for them.

Each run: the server gets N messages while nothing listens where they go
(Postfix: `defer_transports = smtp`, so it makes no attempt; tern: every first
attempt finds the port closed and defers for an hour), then the sinks start,
the server is told to flush (Postfix: defer_transports emptied, `postfix
reload`, `postqueue -f`; tern: `tern queue flush`) and the clock runs until the
sinks have counted N messages. Two cases: (a) every message to one domain,
(b) spread over 100 domains, their MX hosts on 10 loopback addresses. tern
finds them in DNS (dns.py, answers cached); the private Postfix looks nothing
up, so its transport map names the same addresses. Both with their default
concurrency: Postfix 20 connections per destination, 100 smtp processes;
tern its 8 deliveries at once and `[relay] concurrency_per_destination` 4.
No TLS (smtp-sink offers none).
"""

import json
import os
import re
import socket
import statistics
import subprocess
import threading
import time

import dns as bench_dns
from common import DOMAIN, SMTP_SOURCE, log
from procfs import tree_cpu
from report import fmt
from servers import REG, Postfix, Tern, free_port, stop_process

SINK_IPS = [f"127.0.1.{k}" for k in range(1, 11)]
MESG = re.compile(rb"mesg=(\d+)")


class Sink:
    """One smtp-sink counting the messages it took (its -c counter)."""

    def __init__(self, ip, port):
        self.ip, self.port, self.count = ip, port, 0
        self.proc = REG.popen("smtp-sink", [os.path.join(os.path.dirname(SMTP_SOURCE), "smtp-sink"),
                                            "-c", "-u", "nobody", f"{ip}:{port}", "1024"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        tail = b""
        while True:
            chunk = self.proc.stdout.read1(4096) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(64)
            if not chunk:
                return
            tail = (tail + chunk)[-256:]
            found = MESG.findall(tail)
            if found:
                self.count = int(found[-1])

    def stop(self):
        stop_process(self.proc, "smtp-sink", grace=5)
        REG.forget(self.proc)


def destinations(case, n):
    """The recipient of message i, and the domains with the sink address each
    domain's MX points at."""
    if case == "a":
        return [f"u{i}@dest.test" for i in range(n)], {"dest.test": SINK_IPS[0]}
    domains = {f"d{k}.test": SINK_IPS[k % len(SINK_IPS)] for k in range(100)}
    names = sorted(domains, key=lambda d: int(d[1:-5]))
    return [f"u{i}@{names[i % 100]}" for i in range(n)], domains


def message(i, size):
    head = (f"From: load@{DOMAIN}\r\nTo: someone@elsewhere.test\r\nSubject: outbound {i}\r\n"
            f"Message-ID: <out{i}@{DOMAIN}>\r\nDate: Sun, 6 Dec 2026 12:00:00 +0000\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def fill_tern(tern, recipients, size, threads=4):
    """Queues each message through the control socket (as local sendmail
    run by root does: relaying allowed), a few connections at once."""
    sock_path = os.path.join(tern.data, "control.sock")
    errors = []

    def worker(part):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        f = s.makefile("rb")
        for i, rcpt in part:
            body = message(i, size)
            req = {"op": "submit", "sender": f"load@{DOMAIN}", "recipients": [rcpt], "size": len(body)}
            s.sendall(json.dumps(req).encode() + b"\n" + body)
            answer = f.readline()
            if b'"queued"' not in answer:
                errors.append(answer.decode(errors="replace"))
                break
        s.close()

    items = list(enumerate(recipients))
    parts = [items[k::threads] for k in range(threads)]
    ts = [threading.Thread(target=worker, args=(p,)) for p in parts]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(f"tern refused a submission: {errors[0]}")


def fill_postfix(pf, recipients, size):
    """smtp-source into Postfix's port, one run per destination domain."""
    by_domain = {}
    for r in recipients:
        by_domain.setdefault(r.split("@", 1)[1], 0)
        by_domain[r.split("@", 1)[1]] += 1
    for domain, count in by_domain.items():
        r = subprocess.run([SMTP_SOURCE, "-s", "10", "-m", str(count), "-l", str(size), "-M", "client.test",
                            "-f", f"load@{DOMAIN}", "-t", f"u@{domain}", f"127.0.0.1:{pf.port}"],
                           capture_output=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"smtp-source into Postfix failed: {r.stderr[-300:]!r}")


def count_files(path):
    n = 0
    for _, _, files in os.walk(path):
        n += len(files)
    return n


def wait(what, timeout, cond):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def deliver(srv, sinks, n, release, timeout):
    """Starts the clock, releases the queue, waits for the sinks to count n;
    returns (seconds, CPU seconds of the server's tree, final count)."""
    cpu0 = tree_cpu(srv.pid)
    t0 = time.monotonic()
    release()
    total = lambda: sum(s.count for s in sinks)
    wait(f"{n} messages at the sinks", timeout, lambda: total() >= n)
    secs = time.monotonic() - t0
    cpu = tree_cpu(srv.pid) - cpu0
    time.sleep(2)  # anything more (a duplicate) would show now
    return secs, cpu, total()


def run_tern(args, case, n, size, run, sink_port, dns_server):
    recipients, _ = destinations(case, n)
    tn = Tern(args.tern, args.workdir, free_port(), dns_server.port, sub=f"tern-out-{case}-{run}",
              relay_port=sink_port)
    tn.start()
    try:
        t0 = time.monotonic()
        fill_tern(tn, recipients, size)
        # Every first attempt found the port closed: n deferrals logged.
        wait("tern's first attempts", 600, lambda: tn.counter.update()["status=deferred"] >= n)
        log(f"  tern    ({case}) {n} queued and deferred in {time.monotonic() - t0:.1f} s")
        sinks = [Sink(ip, sink_port) for ip in SINK_IPS]
        time.sleep(0.5)
        flush = lambda: subprocess.run([args.tern, "queue", "flush", "--config", tn.config],
                                       check=True, capture_output=True, timeout=60)
        try:
            return deliver(tn, sinks, n, flush, 600)
        finally:
            for s in sinks:
                s.stop()
    finally:
        tn.stop()


def run_postfix(args, case, n, size, run, sink_port):
    recipients, domains = destinations(case, n)
    extra = ["--set", "defer_transports=smtp"]
    for d, ip in domains.items():
        extra += ["--relay", f"{d}={ip}:{sink_port}"]
    pf = Postfix(args.workdir, free_port(), sub=f"postfix-out-{case}-{run}", extra=extra)
    pf.start()
    etc = os.path.join(pf.dir, "etc")
    try:
        t0 = time.monotonic()
        fill_postfix(pf, recipients, size)
        deferred = os.path.join(pf.dir, "queue", "deferred")
        wait("Postfix to queue everything", 600, lambda: count_files(deferred) >= n)
        log(f"  Postfix ({case}) {n} queued (deferred transport) in {time.monotonic() - t0:.1f} s")
        sinks = [Sink(ip, sink_port) for ip in SINK_IPS]
        time.sleep(0.5)

        def release():
            subprocess.run(["/usr/sbin/postconf", "-c", etc, "-e", "defer_transports="], check=True)
            subprocess.run(["/usr/sbin/postfix", "-c", etc, "reload"], check=True, capture_output=True)
            subprocess.run(["/usr/sbin/postqueue", "-c", etc, "-f"], check=True)
        try:
            return deliver(pf, sinks, n, release, 900)
        finally:
            for s in sinks:
                s.stop()
    finally:
        pf.stop()


def outbound(args, cases=("a", "b")):
    n, size = args.outbound, 4096
    sink_port = free_port()
    records = {("dest.test", bench_dns.MX): [(10, "mx.dest.test")],
               ("mx.dest.test", bench_dns.A): [SINK_IPS[0]]}
    for d, ip in destinations("b", 100)[1].items():
        records[(d, bench_dns.MX)] = [(10, f"mx.{d}")]
        records[(f"mx.{d}", bench_dns.A)] = [ip]
    dns_server = bench_dns.DnsServer(records)
    rows = []
    try:
        for case in cases:
            for run in range(args.runs):
                for name in ("postfix", "tern"):
                    if name == "tern":
                        secs, cpu, got = run_tern(args, case, n, size, run, sink_port, dns_server)
                    else:
                        secs, cpu, got = run_postfix(args, case, n, size, run, sink_port)
                    rows.append({"server": name, "case": case, "run": run, "n": n, "secs": secs,
                                 "rate": n / secs, "cpu_s": cpu, "delivered": got})
                    log(f"  {name:7} ({case}) delivered {got} of {n} in {secs:.2f} s: {n / secs:,.0f} msg/s, "
                        f"CPU {cpu / n * 1000:.2f} s per 1,000")
    finally:
        dns_server.close()
    return rows


def write_outbound(args, rows):
    lines = ["# Outbound delivery: tern beside Postfix — scripts/bench --outbound", "",
             f"- {args.outbound} messages of 4 KiB queued while the destination was closed, then released "
             "at once; time until smtp-sink counted them all; medians of "
             f"{args.runs} run(s), alternating Postfix/tern",
             "- (a) one destination domain; (b) 100 domains over 10 loopback sink addresses", "",
             "| case | Postfix msg/s | tern msg/s | tern/Postfix | CPU s/1k Postfix | CPU s/1k tern | "
             "delivered (Postfix, tern) |", "|---|---|---|---|---|---|---|"]
    med = lambda rs, k: statistics.median([r[k] for r in rs]) if rs else None
    for case in sorted({r["case"] for r in rows}):
        p = [r for r in rows if r["case"] == case and r["server"] == "postfix"]
        t = [r for r in rows if r["case"] == case and r["server"] == "tern"]
        pr, tr = med(p, "rate"), med(t, "rate")
        lines.append(f"| {case} | {fmt(pr, 0)} | {fmt(tr, 0)} | {fmt(tr / pr if pr and tr else None, 2)} | "
                     f"{fmt(med(p, 'cpu_s') / args.outbound * 1000 if p else None, 2)} | "
                     f"{fmt(med(t, 'cpu_s') / args.outbound * 1000 if t else None, 2)} | "
                     f"{','.join(str(r['delivered']) for r in p)}; {','.join(str(r['delivered']) for r in t)} |")
    out = os.path.join(args.out, "outbound.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    log(f"written to {out}")
