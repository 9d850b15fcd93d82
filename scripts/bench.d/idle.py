"""scripts/bench.d/idle.py — `scripts/bench --idle N`: what an idle session
costs, tern beside Postfix. Holds N sessions open on each server, first plain
(greeting and EHLO read, then silence) and then after STARTTLS (handshake done,
EHLO again), and reads the server's process tree's memory (RSS and PSS, from
/proc) before and with them open: the difference over N is the cost of one
idle session. tern serves port 25 (mx) and 587 (submission, STARTTLS with its
self-signed certificate); Postfix (a private instance, one smtpd process per
session) serves one port with STARTTLS, its process and connection limits
raised to N so that every session is served at once.
"""

import os
import resource
import socket
import ssl
import time

from common import log
from procfs import tree_memory
from report import mib
from servers import Postfix, Tern, free_port


def read_reply(sock):
    """One SMTP reply (all its lines); raises on a closed connection."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
        lines = data.split(b"\r\n")
        # Complete when the last full line is "NNN " (not "NNN-").
        full = lines[:-1]
        if full and len(full[-1]) >= 4 and full[-1][3:4] == b" ":
            return data


def open_session(port, tls, ctx):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    read_reply(s)
    s.sendall(b"EHLO idle.client.test\r\n")
    read_reply(s)
    if tls:
        s.sendall(b"STARTTLS\r\n")
        if not read_reply(s).startswith(b"220"):
            raise RuntimeError("STARTTLS refused")
        s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(b"EHLO idle.client.test\r\n")
        read_reply(s)
    return s


def settle(pid, seconds=2.0):
    """The tree's memory after `seconds` (median of five readings)."""
    time.sleep(seconds)
    readings = []
    for _ in range(5):
        readings.append(tree_memory(pid))
        time.sleep(0.2)
    readings.sort()
    return readings[2]


def hold(srv, port, n, tls, ctx):
    """Per-session (RSS, PSS) bytes with n sessions open, and the count."""
    base = settle(srv.pid, 1.0)
    socks = []
    try:
        t0 = time.monotonic()
        for _ in range(n):
            socks.append(open_session(port, tls, ctx))
        opened = time.monotonic() - t0
        held = settle(srv.pid)
        # Every session still answers (nobody was dropped while idle).
        alive = 0
        for s in socks:
            try:
                s.sendall(b"NOOP\r\n")
                if read_reply(s).startswith(b"250"):
                    alive += 1
            except OSError:
                pass
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
    rss, pss = (held[0] - base[0]) / n, (held[1] - base[1]) / n
    log(f"  {srv.name:7} {'TLS' if tls else 'plain':5} {n} idle sessions opened in {opened:.1f} s, "
        f"{alive} answered NOOP; per session RSS {rss / 1024:.1f} KiB, PSS {pss / 1024:.1f} KiB "
        f"(tree {mib(held[0])} MiB RSS with them, {held[2]} processes)")
    return {"server": srv.key, "tls": tls, "n": n, "alive": alive, "open_s": opened,
            "rss_per_session": rss, "pss_per_session": pss, "tree_rss": held[0], "tree_pss": held[1],
            "procs": held[2], "base_rss": base[0], "base_pss": base[1]}


def idle_sessions(args, dns_port):
    n = args.idle
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(4 * n + 1024, soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    rows = []
    # Each phase on freshly started servers: Postfix keeps an smtpd process
    # alive for a while after its session ends, which would count in the
    # next phase's "before".
    for tls in (False, True):
        pf = Postfix(args.workdir, free_port(), sub=f"postfix-idle-{int(tls)}", extra=[
            "--tls",
            "--set", f"default_process_limit={n + 50}",
            "--set", "smtpd_client_connection_count_limit=0",
            "--set", "smtpd_client_connection_rate_limit=0",
            "--set", "smtpd_timeout=600s"])
        tn = Tern(args.tern, args.workdir, free_port(), dns_port, sub=f"tern-idle-{int(tls)}",
                  submission_port=free_port(), connections=4 * n)
        try:
            pf.start()
            tn.start()
            rows.append(hold(pf, pf.port, n, tls, ctx))
            rows.append(hold(tn, tn.submission_port if tls else tn.port, n, tls, ctx))
        finally:
            tn.stop()
            pf.stop()
    return rows


def write_idle(args, rows):
    by = {(r["server"], r["tls"]): r for r in rows}
    lines = ["# Idle sessions: tern beside Postfix — scripts/bench --idle", "",
             f"- {args.idle} sessions held open on each server, plain (after EHLO) and after STARTTLS "
             "(handshake and EHLO again), each phase on freshly started servers; per session = (tree memory with them "
             "open - before) / N, each the median of five readings 2 s after the last one opened",
             "- tern: one process (an mx listener, and a submission listener for STARTTLS); Postfix: master and "
             "one smtpd per session (default_process_limit raised); PSS shares the pages of shared "
             "libraries out among the processes, RSS counts them in each", "",
             "| session | tern RSS | tern PSS | Postfix RSS | Postfix PSS | PSS Postfix/tern | "
             "answered (tern, Postfix) |",
             "|---|---|---|---|---|---|---|"]
    for tls in (False, True):
        t, p = by.get(("tern", tls)), by.get(("postfix", tls))
        if not t or not p:
            continue
        ratio = p["pss_per_session"] / t["pss_per_session"] if t["pss_per_session"] > 0 else None
        lines.append(f"| {'STARTTLS' if tls else 'plain'} | {t['rss_per_session'] / 1024:.1f} KiB | "
                     f"{t['pss_per_session'] / 1024:.1f} KiB | {p['rss_per_session'] / 1024:.1f} KiB | "
                     f"{p['pss_per_session'] / 1024:.1f} KiB | "
                     f"{'-' if ratio is None else f'{ratio:.1f}x'} | {t['alive']}, {p['alive']} |")
    out = os.path.join(args.out, "idle.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    log(f"written to {out}")
