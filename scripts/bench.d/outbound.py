"""scripts/bench.d/outbound.py — `scripts/bench --outbound N`: how fast tern and
Postfix deliver N queued messages (4 KiB) to other servers, and whether each
arrives exactly once. The other servers are sink.c (compiled at run time): one
epoll process listening on 10 loopback addresses, logging the recipient and
Message-ID of every message it takes.

Each run: the server gets N messages, each to its own recipient u<i>@domain
with Message-ID <out<i>@bench.test> (tern through its control socket, Postfix
over SMTP), while nothing listens where they go (Postfix: `defer_transports =
smtp`, so it makes no attempt; tern: every first attempt finds the port closed
and defers for an hour). Then the sink starts, both servers get the shortest
retry schedule (tern: [queue] retry_first and retry_max 1s, `tern reload`;
Postfix: minimal_backoff_time, maximal_backoff_time and queue_run_delay 1s, with
defer_transports emptied, `postfix reload`), the server is told to flush
(`tern queue flush`; `postqueue -f`) and the clock runs until the sink has
taken N messages. Three cases: (a) every message to one domain, (b) spread over
100 domains, their MX hosts on 10 loopback addresses, (c) as (b) with the sink
answering `451 4.3.0` to 10% of RCPT commands, drawn afresh for each, so the
server defers those messages and a retry can succeed. tern finds the
destinations in DNS (dns.py, answers cached); the private Postfix looks nothing
up, so its transport map names the same addresses. Both with their default
concurrency: Postfix 20 connections per destination, 100 smtp processes; tern
32 deliveries at once and `[relay] concurrency_per_destination` 4. No TLS (the
sink offers none).

After each run the sink's log is checked: every recipient taken once, with its
own message's Message-ID (a message missing, taken twice or mixed up fails the
bench); the refusals the sink made are set beside the deferrals the server
logged for them, and the time from each such deferral to the message's next
attempt (the retry gap) is read from the server's log. CPU is the server's
process tree's, per 1,000 messages; other load is the machine's busy time in
the window minus the server's and the sink's, in cores.
"""

import json
import os
import re
import smtplib
import socket
import statistics
import subprocess
import threading
import time

import dns as bench_dns
from common import DOMAIN, compile_c, log
from procfs import HZ, machine_ticks, tree_cpu
from report import fmt
from servers import REG, Postfix, Tern, free_port, stop_process

SINK_IPS = [f"127.0.1.{k}" for k in range(1, 11)]
# Case (c): the share of RCPT commands the sink refuses with 451, per mille.
REFUSE = {"a": 0, "b": 0, "c": 100}
# Both servers' retry schedule for the run: the shortest each allows (tern:
# at least 1s; Postfix: 1s is the smallest time its parameters take).
TERN_RETRY = {"retry_first": "1s", "retry_max": "1s"}
POSTFIX_RETRY = {"minimal_backoff_time": "1s", "maximal_backoff_time": "1s", "queue_run_delay": "1s"}


def build_sink(outdir):
    """Compiles sink.c (the bench's remote servers) into outdir."""
    return compile_c("sink.c", os.path.join(outdir, "sink"), ["-Wall"], "the bench's sink")


class Sink:
    """sink.c on every SINK_IPS address: one process, one thread. Its log
    has a line per recipient taken ("A rcpt message-id") and per RCPT
    refused ("R rcpt"); counted as it grows."""

    def __init__(self, binary, port, logpath, refuse_permille):
        self.log, self.offset, self.rest = logpath, 0, b""
        self.count = self.refused = 0
        open(logpath, "wb").close()
        self.proc = REG.popen("sink", [binary, "--port", str(port), "--log", logpath,
                                       "--refuse", str(refuse_permille), "--user", "nobody"] + SINK_IPS,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        wait("the sink to listen", 10, lambda: self._listening(port))

    def _listening(self, port):
        if self.proc.poll() is not None:
            raise RuntimeError(f"the sink exited: {self.proc.stderr.read().decode(errors='replace')}")
        try:
            with socket.create_connection((SINK_IPS[-1], port), timeout=0.2) as s:
                s.sendall(b"QUIT\r\n")
                return True
        except OSError:
            return False

    def update(self):
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest, data = data[cut:], data[:cut]
        self.count += data.count(b"A ")
        self.refused += data.count(b"R ")
        return self.count

    def stop(self):
        stop_process(self.proc, "sink", grace=5)
        REG.forget(self.proc)
        self.update()

    def check(self, recipients):
        """Exactly once: every recipient (one per message, unique) taken once,
        with its message's Message-ID; returns (missing, duplicated, wrong
        Message-ID, most refusals of one recipient)."""
        want = {r: f"<out{i}@{DOMAIN}>" for i, r in enumerate(recipients)}
        seen, refusals = {}, {}
        bad = 0
        with open(self.log, "rb") as f:
            for line in f:
                parts = line.decode(errors="replace").split()
                if len(parts) == 3 and parts[0] == "A":
                    seen[parts[1]] = seen.get(parts[1], 0) + 1
                    if want.get(parts[1]) != parts[2]:
                        bad += 1
                elif len(parts) == 2 and parts[0] == "R":
                    refusals[parts[1]] = refusals.get(parts[1], 0) + 1
        missing = sum(1 for r in want if r not in seen)
        duplicated = sum(c - 1 for c in seen.values() if c > 1)
        return missing, duplicated, bad, max(refusals.values(), default=0)


def destinations(case, n):
    """The recipient of message i (one each, unique: u<i>@domain), and the
    domains with the sink address each domain's MX points at. (c) is (b)'s."""
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


def in_threads(recipients, threads, worker):
    """Runs worker(part) in `threads` threads, the (i, recipient) pairs dealt
    out among them in turn; returns when all are done."""
    items = list(enumerate(recipients))
    ts = [threading.Thread(target=worker, args=(items[k::threads],)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


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

    in_threads(recipients, threads, worker)
    if errors:
        raise RuntimeError(f"tern refused a submission: {errors[0]}")


def fill_smtp(port, recipients, size, threads=8):
    """The same messages into Postfix's port over SMTP, a few sessions at
    once, each carrying many messages."""
    errors = []

    def worker(part):
        try:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=120) as c:
                for i, rcpt in part:
                    c.sendmail(f"load@{DOMAIN}", [rcpt], message(i, size))
        except (smtplib.SMTPException, OSError) as e:
            errors.append(repr(e))

    in_threads(recipients, threads, worker)
    if errors:
        raise RuntimeError(f"Postfix refused a submission: {errors[0]}")


TERN_LINE = re.compile(rb"^\S*T(\d\d):(\d\d):(\d\d\.\d+)Z .*queue_id=(\w+) to=<[^>]*> status=(\w+)")
POSTFIX_LINE = re.compile(rb"^\w+ +\d+ (\d\d):(\d\d):(\d\d) .*: (\w+): to=<[^>]*>, .*status=(\w+)")


def sink_retries(path, offset, server):
    """From a server's log after `offset`: how many deferrals the sink's 451
    caused, and the time from each such deferral to the message's next
    attempt (its next delivery outcome in the log), in seconds (tern logs
    milliseconds, Postfix whole seconds)."""
    pattern = TERN_LINE if server == "tern" else POSTFIX_LINE
    deferred_at, gaps, count = {}, [], 0
    with open(path, "rb") as f:
        f.seek(offset)
        for line in f:
            m = pattern.search(line)
            if not m:
                continue
            h, mi, sec, qid, status = m.groups()
            t = int(h) * 3600 + int(mi) * 60 + float(sec)
            if qid in deferred_at:
                gaps.append((t - deferred_at.pop(qid)) % 86400)
            if status == b"deferred" and b"bench sink" in line:
                count += 1
                deferred_at[qid] = t
    return count, gaps


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


def deliver(srv, sink, recipients, release, timeout):
    """Starts the clock, releases the queue, waits for the sink to take every
    message; returns the row's figures, exactly-once check included."""
    n = len(recipients)
    cpu0, sink0, machine0 = tree_cpu(srv.pid), tree_cpu(sink.proc.pid), machine_ticks()
    t0 = time.monotonic()
    release()
    wait(f"{n} messages at the sink", timeout, lambda: sink.update() >= n)
    secs = time.monotonic() - t0
    cpu, sink_cpu = tree_cpu(srv.pid) - cpu0, tree_cpu(sink.proc.pid) - sink0
    # The rest of the machine's busy time (other sessions, this script): how
    # noisy the run was, in cores.
    busy = (machine_ticks()[0] - machine0[0]) / HZ
    other = max(0.0, busy - cpu - sink_cpu) / secs
    time.sleep(2)  # anything more (a duplicate) would show now
    sink.stop()
    missing, duplicated, bad_id, most = sink.check(recipients)
    return {"secs": secs, "cpu_s": cpu, "sink_cpu_s": sink_cpu, "other_load": other, "delivered": sink.count, "refused": sink.refused,
            "missing": missing, "duplicated": duplicated, "bad_message_id": bad_id,
            "most_refusals_one_message": most}


def run_tern(args, case, recipients, size, run, sink_port, dns_server):
    n = len(recipients)
    tn = Tern(args.tern, args.workdir, free_port(), dns_server.port, sub=f"tern-out-{case}-{run}",
              relay_port=sink_port)
    tn.start()
    try:
        t0 = time.monotonic()
        fill_tern(tn, recipients, size)
        # Every first attempt found the port closed: n deferrals logged.
        wait("tern's first attempts", 600, lambda: tn.counter.update()["status=deferred"] >= n)
        log(f"  tern    ({case}) {n} queued and deferred in {time.monotonic() - t0:.1f} s")
        # The run's retry schedule: the next attempts of the n deferred
        # messages are an hour away until the flush.
        with open(tn.config) as f:
            text = f.read()
        text = text.replace('retry_first = "1h"', f'retry_first = "{TERN_RETRY["retry_first"]}"')
        text = text.replace('retry_max = "4h"', f'retry_max = "{TERN_RETRY["retry_max"]}"')
        with open(tn.config, "w") as f:
            f.write(text)
        subprocess.run([args.tern, "reload", "--config", tn.config], check=True, capture_output=True,
                       timeout=60)
        sink = Sink(args.sink, sink_port, os.path.join(tn.dir, "sink.log"), REFUSE[case])
        time.sleep(0.5)
        offset = os.path.getsize(tn.log_path)
        flush = lambda: subprocess.run([args.tern, "queue", "flush", "--config", tn.config],
                                       check=True, capture_output=True, timeout=60)
        try:
            row = deliver(tn, sink, recipients, flush, 600)
        finally:
            sink.stop()
        row["server_deferrals"], row["retry_gaps"] = sink_retries(tn.log_path, offset, "tern")
        return row
    finally:
        tn.stop()


def run_postfix(args, case, recipients, size, run, sink_port):
    n = len(recipients)
    domains = destinations(case, n)[1]
    extra = ["--set", "defer_transports=smtp"]
    for d, ip in domains.items():
        extra += ["--relay", f"{d}={ip}:{sink_port}"]
    pf = Postfix(args.workdir, free_port(), sub=f"postfix-out-{case}-{run}", extra=extra)
    pf.start()
    etc = os.path.join(pf.dir, "etc")
    maillog = os.path.join(pf.dir, "maillog")
    try:
        t0 = time.monotonic()
        fill_smtp(pf.port, recipients, size)
        deferred = os.path.join(pf.dir, "queue", "deferred")
        wait("Postfix to queue everything", 600, lambda: count_files(deferred) >= n)
        log(f"  Postfix ({case}) {n} queued (deferred transport) in {time.monotonic() - t0:.1f} s")
        sink = Sink(args.sink, sink_port, os.path.join(pf.dir, "sink.log"), REFUSE[case])
        time.sleep(0.5)
        offset = os.path.getsize(maillog)

        def release():
            # The run's retry schedule, and the transport no longer deferred.
            subprocess.run(["/usr/sbin/postconf", "-c", etc, "-e", "defer_transports="]
                           + [f"{k}={v}" for k, v in POSTFIX_RETRY.items()], check=True)
            subprocess.run(["/usr/sbin/postfix", "-c", etc, "reload"], check=True, capture_output=True)
            subprocess.run(["/usr/sbin/postqueue", "-c", etc, "-f"], check=True)
        try:
            row = deliver(pf, sink, recipients, release, 900)
        finally:
            sink.stop()
        time.sleep(1)  # postlogd writes the last lines
        row["server_deferrals"], row["retry_gaps"] = sink_retries(maillog, offset, "postfix")
        return row
    finally:
        pf.stop()


def outbound(args, cases=("a", "b", "c")):
    n, size = args.outbound, 4096
    args.sink = build_sink(args.workdir)
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
            recipients = destinations(case, n)[0]
            for run in range(args.runs):
                for name in ("postfix", "tern"):
                    if name == "tern":
                        row = run_tern(args, case, recipients, size, run, sink_port, dns_server)
                    else:
                        row = run_postfix(args, case, recipients, size, run, sink_port)
                    row.update({"server": name, "case": case, "run": run, "n": n, "rate": n / row["secs"]})
                    rows.append(row)
                    log(f"  {name:7} ({case}) {row['delivered']} of {n} in {row['secs']:.2f} s: "
                        f"{n / row['secs']:,.0f} msg/s, CPU {row['cpu_s'] / n * 1000:.2f} s per 1,000 (sink "
                        f"{row['sink_cpu_s'] / n * 1000:.2f}), other load {row['other_load']:.2f} cores; "
                        f"missing {row['missing']}, duplicated {row['duplicated']}, wrong Message-ID "
                        f"{row['bad_message_id']}; the sink refused {row['refused']} RCPTs, the server "
                        f"logged {row['server_deferrals']} deferrals for them{gaps(row)}")
    finally:
        dns_server.close()
    return rows


def gaps(row):
    """The retry gaps of a row, in words."""
    g = sorted(row["retry_gaps"])
    if not g:
        return ""
    return (f", retried after {statistics.median(g):.1f} s (median; min {g[0]:.1f}, max {g[-1]:.1f})"
            + ("" if len(g) == row["server_deferrals"] else f" ({len(g)} retries seen)"))


def write_outbound(args, rows):
    retry_t = ", ".join(f"{k} {v}" for k, v in TERN_RETRY.items())
    retry_p = ", ".join(f"{k} {v}" for k, v in POSTFIX_RETRY.items())
    lines = ["# Outbound delivery: tern beside Postfix — scripts/bench --outbound", "",
             f"- {args.outbound} messages of 4 KiB, each to its own recipient, queued while the destination "
             "was closed, then released at once; time from the release until the sink (sink.c, on 10 "
             f"loopback addresses) took them all; medians of {args.runs} run(s), alternating Postfix/tern",
             "- (a) one destination domain; (b) 100 domains over 10 sink addresses; (c) as (b), the sink "
             f"answering 451 4.3.0 to {REFUSE['c'] / 10:g}% of RCPT commands (drawn afresh for each)",
             f"- retries: tern [queue] {retry_t}; Postfix {retry_p}",
             "- exactly once: each recipient at the sink once, with its message's Message-ID; "
             "refusals = RCPTs the sink refused, deferrals = the server's log lines for them "
             "(each one retried)", "",
             "| case | Postfix msg/s | tern msg/s | tern/Postfix | CPU s/1k Postfix | CPU s/1k tern | "
             "missing, duplicated (Postfix; tern) | refusals = deferrals (Postfix; tern) | other load, cores |",
             "|---|---|---|---|---|---|---|---|---|"]
    med = lambda rs, k: statistics.median([r[k] for r in rs]) if rs else None
    per_run = lambda rs, f: ",".join(f(r) for r in rs)
    failed = []
    for case in sorted({r["case"] for r in rows}):
        p = [r for r in rows if r["case"] == case and r["server"] == "postfix"]
        t = [r for r in rows if r["case"] == case and r["server"] == "tern"]
        pr, tr = med(p, "rate"), med(t, "rate")
        lost = lambda r: f"{r['missing']} {r['duplicated'] + r['bad_message_id']}"
        refusals = lambda r: f"{r['refused']}={r['server_deferrals']}"
        noise = lambda r: f"{r['other_load']:.2f}"
        lines.append(f"| {case} | {fmt(pr, 0)} | {fmt(tr, 0)} | {fmt(tr / pr if pr and tr else None, 2)} | "
                     f"{fmt(med(p, 'cpu_s') / args.outbound * 1000 if p else None, 2)} | "
                     f"{fmt(med(t, 'cpu_s') / args.outbound * 1000 if t else None, 2)} | "
                     f"{per_run(p, lost)}; {per_run(t, lost)} | {per_run(p, refusals)}; {per_run(t, refusals)} | "
                     f"{per_run(p + t, noise)} |")
        for r in p + t:
            if r["missing"] or r["duplicated"] or r["bad_message_id"]:
                failed.append(f"{r['server']} ({case}) run {r['run']}: {r['missing']} missing, "
                              f"{r['duplicated']} duplicated, {r['bad_message_id']} with a wrong Message-ID")
    lines += ["", "- EXACTLY ONCE FAILED: " + "; ".join(failed) if failed else
              "- every message arrived exactly once in every run"]
    most = {r["server"]: max((x["most_refusals_one_message"] for x in rows if x["server"] == r["server"]),
                             default=0) for r in rows}
    if any(most.values()):
        lines.append("- most refusals of one message (it arrived after that many retries): "
                     + ", ".join(f"{k} {v}" for k, v in most.items()))
    for r in rows:
        if r["retry_gaps"]:
            lines.append(f"- {r['server']} ({r['case']}) run {r['run']}: {r['server_deferrals']} deferrals"
                         f"{gaps(r)}")
    lines += ["", f"- the machine's load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}"]
    out = os.path.join(args.out, "outbound.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "outbound.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\n".join(lines))
    log(f"written to {out}")
    if failed:
        raise RuntimeError("a message was lost or duplicated: " + "; ".join(failed))
