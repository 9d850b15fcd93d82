"""scripts/bench.d/ab.py — tern against tern: two tern servers driven by the
same load, alternating A B A B, medians and the ratio B/A per concurrency.

Two uses:
  * `--checks`: one binary, the incoming-mail checks off (A) and on (B), every
    lookup answered by a DNS server on loopback (dns.py) publishing what an
    honest sender has: client.test's A and MX, an SPF record allowing
    127.0.0.1, a DMARC record, and the PTR of 127.0.0.1. Writes checks.md.
  * `--baseline BIN`: the binary BIN (A, e.g. a build of the previous commit)
    against --tern (B), same config: whether a change to the durable path pays
    for itself. Both accept and deliver into their Maildirs, so the CPU per
    1,000 messages covers the whole path. Writes ab.md.

Each run is bench.py's run_once (4 KiB, one connection per message unless
--modes reuse), so the figures mean what they mean in the main matrix.
"""

import datetime
import os
import statistics

import dns as bench_dns
from common import log
from report import fmt
from servers import Tern, free_port

# What the DNS says of the load generator's domain (smtp-source -M client.test
# -f load@client.test, From: load@client.test) and of 127.0.0.1.
CHECKS_RECORDS = {
    ("client.test", bench_dns.A): ["127.0.0.1"],
    ("client.test", bench_dns.MX): [(10, "client.test")],
    ("client.test", bench_dns.TXT): ["v=spf1 ip4:127.0.0.1 -all"],
    ("_dmarc.client.test", bench_dns.TXT): ["v=DMARC1; p=reject"],
    ("1.0.0.127.in-addr.arpa", bench_dns.PTR): ["client.test"],
}


def alternate(args, run_once, a, b):
    """Starts `a` and `b`, warms both up, then runs each concurrency
    args.runs times per side, alternating; returns the runs (their "server"
    is the side's key). Both are stopped at the end."""
    runs = []
    reuse = "reuse" in args.mode_list and "new" not in args.mode_list
    try:
        for srv in (a, b):
            srv.start()
        log("warm-up: 200 messages to each")
        for srv in (a, b):
            run_once(args, srv, 4096, False, 10, 200, f"warmup-{srv.key}")
        for c in args.conc:
            log(f"A/B: 4 KiB, {'reuse' if reuse else 'new'}, c={c}, N={args.messages}, "
                f"{args.runs} run(s) each, alternating {a.name} / {b.name}")
            for run in range(args.runs):
                for srv in (a, b):
                    r = run_once(args, srv, 4096, reuse, c, args.messages, f"{srv.key}-{c}-{run}")
                    r["run"] = run
                    runs.append(r)
    finally:
        b.stop()
        a.stop()
    return runs


def checks_ab(args, run_once):
    """tern with the incoming-mail checks off and on; returns the runs, the
    DNS queries answered during them and the verdicts in the checked tern's log."""
    server = bench_dns.DnsServer(CHECKS_RECORDS)
    log(f"loopback DNS on 127.0.0.1:{server.port} for the checks")
    off = Tern(args.tern, args.workdir, free_port(), server.port, sub="tern-checks-off")
    on = Tern(args.tern, args.workdir, free_port(), server.port, sub="tern-checks-on", checks=True)
    off.name, off.key = "off", "tern"
    on.name, on.key = "checks", "tern-checks"
    try:
        q0 = server.queries
        runs = alternate(args, run_once, off, on)
        queries = server.queries - q0
        with open(on.log_path, "rb") as f:
            text = f.read().decode(errors="replace")
    finally:
        server.close()
    # What the checks concluded, from the journal fields of the log.
    verdicts = {k: text.count(k) for k in ("spf=pass", "dmarc=pass", "iprev=pass", "dkim=none")}
    notes = [f"on = [mx] verify_sender_domain and authenticate (SPF HELO + MAIL FROM, iprev, DKIM, "
             f"DMARC) against a loopback DNS server: {queries} queries answered (warm-up included); "
             f"in the log of the checked tern (warm-up included): "
             + ", ".join(f"{k} x{v}" for k, v in verdicts.items())]
    write_ab(args, runs, (off, on), "tern: incoming-mail checks on vs off — scripts/bench --checks",
             notes, "checks.md")


def baseline_ab(args, run_once, dns_port, baseline, baseline_source):
    """The baseline binary (A) against args.tern (B), same config."""
    a = Tern(os.path.abspath(baseline), args.workdir, free_port(), dns_port, sub="tern-baseline")
    b = Tern(args.tern, args.workdir, free_port(), dns_port, sub="tern-candidate")
    a.name, a.key = "base", "tern-baseline"
    b.name, b.key = "cand", "tern"
    runs = alternate(args, run_once, a, b)
    notes = [f"A (baseline): {a.binary}{f' ({baseline_source})' if baseline_source else ''}; {a.version()}",
             f"B (candidate): {b.binary}{f' ({args.tern_source})' if args.tern_source else ''}; {b.version()}",
             "e2e = until every message is in the Maildir's new/; CPU = the tern process's, accept and "
             "delivery, per 1,000 messages"]
    write_ab(args, runs, (a, b), "tern: baseline vs candidate — scripts/bench --baseline", notes, "ab.md")


def write_ab(args, runs, sides, title, notes, name):
    """The table of one A/B: per concurrency the medians of each side and B/A."""
    a, b = sides
    lines = [f"# {title}", "",
             f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"- N = {args.messages} messages of 4 KiB per run, {args.runs} run(s) per side and "
             f"concurrency, alternating {a.name}/{b.name}; medians"]
    lines += [f"- {n}" for n in notes]
    lines += ["", f"| c | accept {a.name} | accept {b.name} | {b.name}/{a.name} | e2e msg/s {a.name} | "
              f"e2e msg/s {b.name} | p50 ms {a.name} | p50 ms {b.name} | p99 ms {a.name} | p99 ms {b.name} | "
              f"CPU/1k {a.name} | CPU/1k {b.name} | other load |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    med = lambda rs, k: statistics.median([r[k] for r in rs if r.get(k) is not None]) if rs else None
    for c in args.conc:
        ra = [r for r in runs if r["conc"] == c and r["server"] == a.key and r["ok"]]
        rb = [r for r in runs if r["conc"] == c and r["server"] == b.key and r["ok"]]
        x, y = med(ra, "accept_rate"), med(rb, "accept_rate")
        lines.append(f"| {c} | {fmt(x, 0)} | {fmt(y, 0)} | {fmt(y / x if x and y else None, 2)} | "
                     f"{fmt(med(ra, 'e2e_rate'), 0)} | {fmt(med(rb, 'e2e_rate'), 0)} | "
                     f"{fmt(med(ra, 'p50_ms'), 2)} | {fmt(med(rb, 'p50_ms'), 2)} | "
                     f"{fmt(med(ra, 'p99_ms'), 2)} | {fmt(med(rb, 'p99_ms'), 2)} | "
                     f"{fmt(med(ra, 'cpu_per_1k'), 2)} | {fmt(med(rb, 'cpu_per_1k'), 2)} | "
                     f"{fmt(med(ra + rb, 'other_load'), 2)} |")
    failed = [r for r in runs if not r["ok"]]
    if failed:
        lines.append("")
        lines.append(f"{len(failed)} run(s) failed: " + "; ".join(
            f"{r['server']} c={r['conc']}: {r['accepted']} accepted, {r['refused']} refused" for r in failed))
    out = os.path.join(args.out, name)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    log(f"written to {out}")
