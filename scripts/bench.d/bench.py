#!/usr/bin/python3
"""scripts/bench.d/bench.py — the body of scripts/bench: tern side by side with
Postfix on loopback, as issue 5 asks. See scripts/bench for the overview.

Method (also written into the results file):
  * Both servers accept mail for bench.test on 127.0.0.1 (their own ports) and
    deliver bench@bench.test into a Maildir. Postfix is a private instance made
    by scripts/postfix-instance (queue fsync'd as always, virtual(8) delivery);
    tern runs `tern serve` with a generated config (250 only after the group
    commit's fdatasync; Maildir tmp -> flush -> new -> flush, each flush a
    group-committed syncfs shared by the deliveries of that moment).
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
    /proc/PID/io write_bytes. Client CPU = smtp-source's (getrusage of the
    children); other load = the machine's busy time (/proc/stat) minus
    server and client, in cores: the noise of that run.
  * Both servers run with their defaults otherwise (Postfix: in_flow_delay
    1s, virtual delivery concurrency 20; tern: its built-in 32 deliveries at
    once), and log to a file (Postfix: maillog_file; tern: stderr).
  * Before each run: the Maildir's new/ is moved aside (deleted at the end;
    deleting thousands of files just before a run makes file creation slow
    for minutes on ext4 without a journal), then `sync`.
  * Postfix's RSS sum counts the shared libraries of each of its processes
    again; PSS shares them out and is the fairer memory figure for it.

`--checks` instead compares tern with itself: the checks on incoming mail off
(as in the matrix) against all of them on (sender domain, SPF for HELO and
MAIL FROM, iprev, DKIM, DMARC), into checks.md; `--baseline BIN` compares the
tern binary BIN with --tern (the same config), into ab.md: the A/B for a
change. Same load, alternating runs, medians and the ratio (ab.py).

Modules: common.py (paths, logging), procfs.py (/proc readings), servers.py
(the processes: Postfix, tern, cleanup by PID), report.py (results.md),
ab.py (tern against tern: --checks, --baseline),
dns.py (the loopback DNS server of --checks and --outbound), idle.py (--idle:
the memory of idle sessions), outbound.py (--outbound: delivery to other
servers, cases (a) one domain, (b) 100 domains, (c) 10% of recipients refused
with 451 and retried; exactly-once checked), latency.c (the LD_PRELOAD shim),
sink.c (the remote servers of --outbound: an epoll SMTP sink that logs every
message it takes and refuses a share of recipients), submission.py
(--submission: port 587 with STARTTLS, AUTH and DKIM signing) with submit.c
(its TLS/AUTH load generator).
"""

import argparse
import datetime
import hashlib
import math
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from common import DOMAIN, POSTFIX_INSTANCE, REPO, SMTP_SOURCE, Interrupted, compile_c, log, on_signal
from procfs import (HZ, Sampler, busy_share, machine_ticks, thread_cpu, tree_cpu, tree_memory,
                    tree_write_bytes)
from report import fmt, fmt_size, mib, parse_size, write_results
from servers import REG, Postfix, Tern, Trash, count_dir, free_port, stop_process, wait_delivered
from idle import idle_sessions, write_idle
from outbound import outbound, write_outbound
from ab import baseline_ab, checks_ab
from submission import submission, write_submission

TRASH = None


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
    TRASH.retire(new_dir)
    subprocess.run(["sync"], timeout=300)
    time.sleep(0.3)
    latfile = os.path.join(args.workdir, f"lat-{tag}.txt")
    cpu0 = tree_cpu(srv.pid)
    wb0 = tree_write_bytes(srv.pid)
    threads0 = thread_cpu(srv.pid) if srv.key == "tern" else {}
    sampler = Sampler(srv.pid)
    sampler.start()
    timeout = 120 + n * max(size, 4096) / 4096 / 20  # a floor of ~20 msg/s
    machine0 = machine_ticks()
    client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_start = time.monotonic()
    ok, accept_s, err = smtp_source(args, srv.port, n, size, conc, reuse,
                                    f"bench@{DOMAIN}", latfile, timeout)
    client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # End to end: until all N are in new/ (bounded).
    e2e_s = wait_delivered(srv, new_dir, n, t_start, timeout)
    cpu1 = tree_cpu(srv.pid)
    machine1 = machine_ticks()
    wall = time.monotonic() - t_start
    wb1 = tree_write_bytes(srv.pid)
    threads1 = thread_cpu(srv.pid) if srv.key == "tern" else {}
    sampler.finish()
    client_cpu = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
    # The rest of the machine's busy time (other sessions, this script):
    # how noisy the run was, in cores.
    busy_s = (machine1[0] - machine0[0]) / HZ
    other_load = max(0.0, busy_s - (cpu1 - cpu0) - client_cpu) / wall if wall > 0 else None
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
        "client_cpu_per_1k": client_cpu / n * 1000,
        "machine_busy": busy_share(machine0, machine1), "other_load": other_load,
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
        f"CPU {r['cpu_per_1k']:.2f} s/1k, other load {fmt(other_load, 2)} cores: {status}")
    return r


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
    size = args.scale_size
    rows = []
    time.sleep(1)
    rss_empty, _, _ = idle_memory(srv.pid)
    queued = 0

    def one_probe():
        """One smtp-source run of `probe` messages; its figures."""
        nonlocal queued
        latfile = os.path.join(workdir, "lat-scale.txt")
        subprocess.run(["sync"], timeout=300)
        cpu0, machine0 = tree_cpu(srv.pid), machine_ticks()
        client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ok, secs, err = smtp_source(args, port, probe, size, 10, False, rcpt, latfile, 600)
        cpu1, machine1 = tree_cpu(srv.pid), machine_ticks()
        client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
        busy_s = (machine1[0] - machine0[0]) / HZ
        other_load = max(0.0, busy_s - (cpu1 - cpu0) - client_cpu) / secs if secs > 0 else None
        lats, _ = read_latencies(latfile)
        queued += len(lats)
        if not wait_deferred(srv, queued, 600):
            log("scaling: the scheduler did not settle (deferrals) in 600 s")
        return {"ok": ok and len(lats) == probe, "accept_rate": len(lats) / secs,
                "p50_ms": percentile(lats, 50) * 1000 if lats else None,
                "p99_ms": percentile(lats, 99) * 1000 if lats else None,
                "probe_cpu_per_1k": (cpu1 - cpu0) / max(1, len(lats)) * 1000, "other_load": other_load}

    def accept_probe(level_label):
        """--scale-runs probes; the one with the median rate stands for them."""
        runs = sorted((one_probe() for _ in range(args.scale_runs)), key=lambda r: r["accept_rate"])
        row = dict(runs[len(runs) // 2])
        rss, pss, _ = tree_memory(srv.pid)
        row.update({"queued_before": level_label, "probe": probe, "size": size,
                    "ok": all(r["ok"] for r in runs), "probe_rates": [r["accept_rate"] for r in runs],
                    "probe_other_loads": [r["other_load"] for r in runs],
                    "rss_after": rss, "pss_after": pss, "queued_after": queued, "rss_empty": rss_empty})
        log(f"scaling: {level_label} queued: accept {row['accept_rate']:.0f} msg/s (median of "
            f"{', '.join(f'{r:.0f}' for r in row['probe_rates'])}; c=10, new, {fmt_size(size)}), "
            f"p99 {fmt(row['p99_ms'], 2)} ms, RSS {mib(rss)} MiB with {queued} queued, "
            f"other load {fmt(row['other_load'], 2)} cores")
        return row

    rows.append(accept_probe(0))
    for level in args.scale:
        fill = level - queued
        if fill > 0:
            log(f"scaling: filling to {level} queued messages ({fill} more, c=20, reuse, {fmt_size(size)})")
            t_fill = time.monotonic()
            ok, secs, err = smtp_source(args, port, fill, size, 20, True, rcpt, None, 120 + fill / 20)
            if not ok:
                raise RuntimeError(f"scaling fill failed: {err}")
            queued += fill
            fill_rate = fill / secs
            if not wait_deferred(srv, queued, 120 + fill / 50):
                log("scaling: the scheduler did not settle after the fill")
            settle_s = time.monotonic() - t_fill - secs
            log(f"scaling: filled {fill} in {secs:.1f} s ({fill_rate:.0f} msg/s); every one deferred "
                f"{settle_s:.1f} s later")
        else:
            fill_rate = settle_s = None
        rss_level, pss_level, _ = tree_memory(srv.pid)
        row = accept_probe(queued)
        row["fill_rate"], row["fill_settle_s"] = fill_rate, settle_s
        row["rss_at_level"], row["pss_at_level"] = rss_level, pss_level
        # Recovery: stop, start again, time to "ready:" and to the 220.
        stop_s = srv.stop()
        subprocess.run(["sync"], timeout=300)
        t_ready, t_220, cpu_ready = srv.start(timeout=900)
        time.sleep(1)
        rss_rec, pss_rec, _ = tree_memory(srv.pid)
        row.update({"stop_s": stop_s, "recovery_ready_s": t_ready, "recovery_220_s": t_220,
                    "recovery_cpu_s": cpu_ready, "rss_after_recovery": rss_rec,
                    "rss_per_queued": (rss_rec - rss_empty) / max(1, queued),
                    "ready_line": srv.ready_line()})
        srv.counter.counts["status=deferred"] = queued  # a fresh log position
        log(f"scaling: {queued} queued: restart ready after {t_ready:.3f}s (220 after {t_220:.3f}s, "
            f"CPU {cpu_ready:.2f} s), RSS {mib(rss_rec)} MiB ({row['rss_per_queued']:.0f} bytes per queued "
            f"message); {row['ready_line']}")
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


def sha256_prefix(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


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


def tern_version(binary):
    r = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def build_shim(outdir):
    return compile_c("latency.c", os.path.join(outdir, "latency.so"), ["-shared", "-fPIC", "-ldl"],
                     "the latency shim")


def idle_memory(root, seconds=1.0):
    vals = []
    for _ in range(5):
        vals.append(tree_memory(root))
        time.sleep(seconds / 5)
    return (statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals),
            max(v[2] for v in vals))


def perf_profile(args, dns_port):
    """A tern of its own (--perf-tern, default the benchmarked binary; it
    needs symbols to say much) under `perf record` while it takes N messages
    of 4 KiB at c=10 with one connection per message, then N at c=50 with
    reuse. Writes perf-tern.txt: by thread, by DSO, by system call
    (inclusive), the hottest symbols."""
    perf = shutil.which("perf")
    if not perf:
        log("perf not found; no profile")
        return None
    binary = os.path.abspath(args.perf_tern) if args.perf_tern else args.tern
    srv = Tern(binary, args.workdir, free_port(), dns_port, sub="tern-perf")
    srv.start()
    data = os.path.join(args.workdir, "perf.data")
    p = REG.popen("perf", [perf, "record", "-e", "cpu-clock", "-F", "999", "-g", "-p",
                           str(srv.pid), "-o", data],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    runs = [run_once(args, srv, 4096, False, 10, args.messages, "perf-1"),
            run_once(args, srv, 4096, True, 50, args.messages, "perf-2")]
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        stop_process(p, "perf", grace=5)
    REG.forget(p)
    srv.stop()
    out = os.path.join(args.out, "perf-tern.txt")
    report = [perf, "report", "-i", data, "--stdio"]
    with open(out, "w") as f:
        f.write(f"# perf record -e cpu-clock -F 999 -g on {binary}\n"
                f"# load: {args.messages} x 4 KiB at c=10 (new), then {args.messages} at c=50 (reuse)\n")
        for r in runs:
            f.write(f"# {r['conc']=} {r['reuse']=}: {r['accept_rate']:.0f} msg/s, CPU {r['cpu_per_1k']:.2f} s/1k\n")
        f.flush()
        for title, extra in (
                ("by thread name", ["--no-children", "--sort", "comm", "-g", "none"]),
                ("by DSO", ["--no-children", "--sort", "dso", "-g", "none"]),
                ("system calls and kernel paths, inclusive", ["--children", "--sort", "symbol", "-g", "none",
                                                             "--percent-limit", "1"]),
                ("hottest symbols, exclusive", ["--no-children", "--sort", "dso,symbol", "-g", "none",
                                                "--percent-limit", "0.3"])):
            f.write(f"\n### {title}\n")
            f.flush()
            subprocess.run(report + extra, stdout=f, stderr=subprocess.DEVNULL, timeout=600)
    log(f"perf report written to {out}")
    return out


def main():
    global TRASH
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tern", help="tern binary to use (default: build with scripts/build)")
    ap.add_argument("--tern-source", help="with --tern: what it was built from, for the results (e.g. a commit)")
    ap.add_argument("--quick", action="store_true",
                    help="a two-minute check of a change: c=10, 4 KiB, new connections, 1,000 messages, "
                    "1 run each (accept and end to end), no scaling test, then outbound case (a) "
                    "with 2,000 messages")
    ap.add_argument("--messages", "-n", type=int, help="messages per run (default 5000; quick 1000)")
    ap.add_argument("--runs", type=int, help="runs per server and cell (default 3; quick 1)")
    ap.add_argument("--concurrency", help="smtp-source sessions (default 1,10,50; quick 10)")
    ap.add_argument("--sizes", help="message payload sizes (default 4k,100k; quick 4k)")
    ap.add_argument("--modes",
                    help="new = one connection per message, reuse = smtp-source -d (default both)")
    ap.add_argument("--scale", help="queued levels for the scaling test (default 10000,100000; quick 1000,5000)")
    ap.add_argument("--scale-probe", type=int, help="messages per accept probe in the scaling test (default 2000)")
    ap.add_argument("--scale-runs", type=int, default=3,
                    help="accept probes at each level of the scaling test; the median is reported (default 3)")
    ap.add_argument("--scale-size", default="4k",
                    help="message size of the scaling test's fill and probes (default 4k; e.g. 512 for 1,000,000)")
    ap.add_argument("--no-main", action="store_true", help="skip the side-by-side matrix")
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling test")
    ap.add_argument("--idle", type=int, metavar="N",
                    help="only measure N idle sessions (plain, then STARTTLS) held open on tern and on "
                    "Postfix: memory per session; writes idle.md")
    ap.add_argument("--outbound", type=int, metavar="N",
                    help="only measure delivery of N queued messages to sinks on loopback (sink.c), tern "
                    "beside Postfix, (a) one domain, (b) 100 domains, (c) as (b) with 10%% of recipients "
                    "refused with 451 and retried; checks exactly-once; writes outbound.md")
    ap.add_argument("--outbound-cases", default="abc", metavar="CASES",
                    help="with --outbound: which of the cases a, b, c to run (default abc)")
    ap.add_argument("--checks", action="store_true",
                    help="only compare tern with the incoming-mail checks off and on (4 KiB, new "
                    "connections, --concurrency); writes checks.md")
    ap.add_argument("--baseline", metavar="BIN",
                    help="only compare the tern binary BIN (A) with --tern (B), same config, alternating "
                    "(4 KiB, --concurrency, --modes new or reuse); writes ab.md")
    ap.add_argument("--baseline-source", help="with --baseline: what BIN was built from, for the results")
    ap.add_argument("--submission", action="store_true",
                    help="only measure submission on 587 (STARTTLS + AUTH): tern with DKIM signing, tern "
                    "without, Postfix with Dovecot SASL; --concurrency, --modes, --runs; writes submission.md")
    ap.add_argument("--sub-messages", help="with --submission: messages per run, NEW,REUSE (default 300,1500)")
    ap.add_argument("--perf", action="store_true",
                    help="also profile a tern under perf record (two extra runs); writes perf-tern.txt")
    ap.add_argument("--perf-tern", help="binary for --perf (default --tern); give one with symbols, e.g. built "
                    "with CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only")
    ap.add_argument("--workdir", help="scratch directory (default: a new /var/tmp/tern-bench.*; removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--keep-latency", action="store_true", help="keep the per-run latency files")
    ap.add_argument("--out", default=os.path.join(REPO, "target", "bench"), help="results directory")
    args = ap.parse_args()

    args.messages = args.messages or (1000 if args.quick else 5000)
    args.runs = args.runs or (1 if args.quick else 3)
    args.concurrency = args.concurrency or ("10" if args.quick else "1,10,50")
    args.sizes = args.sizes or ("4k" if args.quick else "4k,100k")
    args.modes = args.modes or ("new" if args.quick else "new,reuse")
    if args.quick:
        args.no_scaling = True
    args.conc = [int(c) for c in args.concurrency.split(",") if c]
    args.size_list = [parse_size(s) for s in args.sizes.split(",") if s]
    args.mode_list = [m.strip() for m in args.modes.split(",") if m]
    if any(m not in ("new", "reuse") for m in args.mode_list):
        ap.error("--modes takes new and/or reuse")
    args.scale = [int(x) for x in (args.scale or ("1000,5000" if args.quick else "10000,100000")).split(",")]
    args.scale_probe = args.scale_probe or (200 if args.quick else 2000)
    args.scale_size = parse_size(args.scale_size)

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
        args.tern_given = bool(args.tern)
        args.tern = os.path.abspath(args.tern) if args.tern else build_tern()
        args.shim = build_shim(args.out)
        if args.workdir:
            os.makedirs(args.workdir, exist_ok=True)
        else:
            args.workdir = tempfile.mkdtemp(prefix="tern-bench.", dir="/var/tmp")
            made_workdir = True
        os.chmod(args.workdir, 0o755)
        TRASH = Trash(args.workdir)
        log(f"scratch directory {args.workdir}")
        if args.checks:
            checks_ab(args, run_once)
            return 0
        # A loopback UDP socket that never answers: tern's resolver points here.
        dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dns.bind(("127.0.0.1", 0))
        dns_port = dns.getsockname()[1]
        if args.baseline:
            baseline_ab(args, run_once, dns_port, args.baseline, args.baseline_source)
            return 0
        if args.idle:
            write_idle(args, idle_sessions(args, dns_port))
            return 0
        if args.submission:
            args.dns_port, args.trash = dns_port, TRASH
            new_n, reuse_n = (args.sub_messages or "300,1500").split(",")
            args.sub_messages_new, args.sub_messages_reuse = int(new_n), int(reuse_n)
            runs, meta = submission(args)
            write_submission(args, runs, meta, f"binary {args.tern} ({tern_version(args.tern)}), "
                             f"{Postfix.version()}, repo HEAD {git_info()}")
            return 0
        if args.outbound:
            cases = tuple(c for c in "abc" if c in args.outbound_cases)
            if not cases or set(args.outbound_cases) - set("abc"):
                raise RuntimeError(f"--outbound-cases takes letters of abc, not {args.outbound_cases!r}")
            write_outbound(args, outbound(args, cases))
            return 0

        pf = Postfix(args.workdir, free_port())
        tn = Tern(args.tern, args.workdir, free_port(), dns_port)
        results["machine"] = machine_info(args.workdir)
        results["versions"] = {"postfix": Postfix.version(), "tern": tn.version(),
                               "tern_binary": args.tern, "tern_sha256": sha256_prefix(args.tern),
                               "tern_source": (f"given with --tern{f' ({args.tern_source})' if args.tern_source else ''}"
                                               if args.tern_given else f"scripts/build of {git_info()}"),
                               "repo_head": git_info()}
        results["params"] = {"messages": args.messages, "runs": args.runs, "concurrency": args.conc,
                             "sizes": args.size_list, "modes": args.mode_list, "scale": args.scale,
                             "scale_probe": args.scale_probe, "scale_size": args.scale_size,
                             "scale_runs": args.scale_runs}
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
            tn.stop()
            pf.stop()
        if args.perf:
            results["perf_report"] = perf_profile(args, dns_port)
        if args.quick:
            args.outbound = 2000
            write_outbound(args, outbound(args, cases=("a",)))
        if not args.no_scaling:
            rows, spool_bytes = scaling(args, args.workdir, dns_port)
            results["scaling"] = rows
            results["scaling_spool_bytes"] = spool_bytes
        results["machine"]["load_at_end"] = open("/proc/loadavg").read().split()[:3]
        results["duration_s"] = time.time() - started
        results["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        write_results(args, results, __doc__)
    except Interrupted as e:
        log(f"interrupted ({e}); cleaning up")
        return 130
    except Exception as e:  # noqa: BLE001 — report, clean up, fail
        log(f"error: {e}")
        args.keep = True  # the logs in the scratch directory say more
        if results["runs"]:
            results["partial"] = True
            results["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            results["duration_s"] = time.time() - started
            try:
                write_results(args, results, __doc__)
            except Exception as e2:  # noqa: BLE001
                log(f"could not write partial results: {e2}")
        raise
    finally:
        # Ctrl-C again during the cleanup must not leave processes behind.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        REG.cleanup()
        if TRASH:
            TRASH.purge()
        if dns:
            dns.close()
        if made_workdir and not args.keep and args.workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)
        elif args.workdir:
            log(f"scratch directory kept: {args.workdir}")
    return 0



if __name__ == "__main__":
    sys.exit(main())
