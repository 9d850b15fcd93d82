"""scripts/bench.d/report.py — turns the benchmark's runs into
target/bench/results.md (and results.json): tables of medians with the
ratio tern/Postfix, the targets of issue 5, the scaling table, every run."""

import json
import os
import statistics
import textwrap

from common import DOMAIN, log

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


def write_results(args, res, method_doc):
    """Writes results.md and results.json under args.out and prints the
    Markdown; `method_doc` is bench.py's docstring (its Method section is
    copied in)."""
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
    P(f"- versions: {v.get('postfix')}; {v.get('tern')}: binary {v.get('tern_binary')} "
      f"(sha256 {v.get('tern_sha256')}…, {v.get('tern_source')}); repo HEAD {v.get('repo_head')}")
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
                      "cpu_per_1k", "write_kib_per_msg", "client_cpu_per_1k", "other_load"):
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
          "| CPU s/1k msg Postfix | tern | ratio | disk write KiB/msg Postfix | tern | client CPU s/1k (P / t) |")
        P("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for s in summary:
            rss, pss, cpu, wk = s["peak_rss"], s["peak_pss"], s["cpu_per_1k"], s["write_kib_per_msg"]
            cl = s["client_cpu_per_1k"]
            P(f"| {fmt_size(s['size'])} | {'reuse' if s['reuse'] else 'new'} | {s['conc']} "
              f"| {mib(rss[0])} | {mib(rss[1])} | {fmt_ratio(ratio(rss[1], rss[0]))} "
              f"| {mib(pss[0])} | {mib(pss[1])} | {fmt_ratio(ratio(pss[1], pss[0]))} "
              f"| {fmt(cpu[0], 2)} | {fmt(cpu[1], 2)} | {fmt_ratio(ratio(cpu[1], cpu[0]))} "
              f"| {fmt(wk[0], 1)} | {fmt(wk[1], 1)} | {fmt(cl[0], 2)} / {fmt(cl[1], 2)} |")
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
        outliers = []
        for size, reuse, c in cells:
            for server in ("postfix", "tern"):
                mine = [r for r in runs if (r["size"], r["reuse"], r["conc"], r["server"]) == (size, reuse, c, server)
                        and r["ok"]]
                typical = med(mine, "e2e_s")
                for r in mine:
                    if typical and r["e2e_s"] > 3 * typical and r["e2e_s"] - typical > 5:
                        outliers.append(f"{server} {fmt_size(size)} {'reuse' if reuse else 'new'} c={c} run {r['run'] + 1}: "
                                        f"{r['e2e_s']:.1f} s (median {typical:.1f} s; accept took {r['accept_s']:.1f} s)")
        if outliers:
            P("Runs whose delivery took more than 3× the median (the median hides them; look into these): "
              + "; ".join(outliers) + ".")
            P("")
    if res.get("scaling"):
        P("## Scaling: tern with a queue held back (issue 5 §3, issue 18 §4)")
        P("")
        size = fmt_size(res["params"].get("scale_size", 4096))
        P(f"Messages of {size} to stuck@{DOMAIN}, whose Maildir cannot be created (it would lie under a plain "
          "file), fail temporarily once each and stay queued (retry in 1 h). At each level: "
          f"{res['params'].get('scale_runs', 1)} accept probe(s) of "
          f"{res['params']['scale_probe']} messages each ({size}, c=10, one connection per message; the median "
          "probe's figures, every rate in the last column), the RSS, then a "
          "restart: time from exec to the \"ready:\" log line and to the first 220 greeting (spool recovery "
          "happens before the listeners are bound), the CPU used until ready, the RSS a second later. "
          "Bytes per queued message = (RSS after recovery − RSS of the empty server) / queued.")
        P("")
        P("| queued | accept msg/s | vs 0 queued | p99 ms | server CPU s/1k | other load cores "
          "| fill msg/s (c=20, reuse) | RSS MiB at level | queued at restart | recovery to ready s | to 220 s "
          "| recovery CPU s | RSS after recovery MiB | bytes per queued message | every probe msg/s |")
        P("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
        base = res["scaling"][0]["accept_rate"]
        for row in res["scaling"]:
            restart = f"{row['queued_after']:,}" if row.get("recovery_ready_s") else "—"
            vs0 = f"{row['accept_rate'] / base:.2f}×" if base else "—"
            P(f"| {row['queued_before']:,} | {fmt(row['accept_rate'], 0)} | {vs0} | {fmt(row.get('p99_ms'), 2)} "
              f"| {fmt(row.get('probe_cpu_per_1k'), 2)} | {fmt(row.get('other_load'), 2)} "
              f"| {fmt(row.get('fill_rate'), 0)} | {mib(row.get('rss_at_level') or row['rss_after'])} "
              f"| {restart} | {fmt(row.get('recovery_ready_s'), 3)} "
              f"| {fmt(row.get('recovery_220_s'), 3)} | {fmt(row.get('recovery_cpu_s'), 2)} "
              f"| {mib(row.get('rss_after_recovery'))} | {fmt(row.get('rss_per_queued'), 0)} "
              f"| {', '.join(fmt(r, 0) for r in row.get('probe_rates', []))} |")
        if res["scaling"][0].get("rss_empty"):
            P("")
            P(f"RSS of the empty server: {mib(res['scaling'][0]['rss_empty'])} MiB.")
        last = res["scaling"][-1]
        if last.get("recovery_ready_s") and base:
            P("")
            P(f"Targets (issue 18 §4): recovery of {last['queued_after']:,} to ready in "
              f"{last['recovery_ready_s']:.2f} s, to 220 in {last['recovery_220_s']:.2f} s (target < 30 s: "
              f"{'met' if last['recovery_220_s'] < 30 else 'MISSED'}); accept with {last['queued_before']:,} "
              f"queued {last['accept_rate'] / base:.2f}× that with none (target ≥ 0.5×: "
              f"{'met' if last['accept_rate'] / base >= 0.5 else 'MISSED'}).")
        rec = [r for r in res["scaling"] if r.get("recovery_ready_s")]
        if len(rec) >= 2:
            a, b = rec[0], rec[-1]
            qa, qb = a["queued_after"], b["queued_after"]
            grow = b["recovery_ready_s"] / a["recovery_ready_s"] if a["recovery_ready_s"] else None
            # The CPU it took, which the machine's other load does not stretch.
            cpu_grow = (b["recovery_cpu_s"] / a["recovery_cpu_s"]
                        if a.get("recovery_cpu_s") and b.get("recovery_cpu_s") else None)
            verdict = ("looks linear" if grow is not None and grow <= 1.5 * qb / qa
                       else "the wall time grows faster than linear — look at it")
            if cpu_grow is not None:
                verdict += (f"; its CPU {a['recovery_cpu_s']:.2f} s vs {b['recovery_cpu_s']:.2f} s, ×{cpu_grow:.1f}: "
                            + ("linear" if cpu_grow <= 1.5 * qb / qa else "faster than linear"))
            P("")
            P(f"Recovery of {qb:,} vs {qa:,} queued: {b['recovery_ready_s']:.3f} s vs {a['recovery_ready_s']:.3f} s, "
              f"×{grow:.1f} for ×{qb / qa:.1f} the messages: {verdict}. Per 1,000 queued: "
              f"{a['recovery_ready_s'] / qa * 1000 * 1000:.1f} ms vs {b['recovery_ready_s'] / qb * 1000 * 1000:.1f} ms; "
              f"marginal cost {(b['recovery_ready_s'] - a['recovery_ready_s']) / max(1, qb - qa) * 1e6:.1f} ms "
              "per 1,000 more. "
              f"Memory per queued message (RSS after recovery, difference between the levels): "
              f"{(b['rss_after_recovery'] - a['rss_after_recovery']) / max(1, qb - qa):,.0f} bytes.")
        P("")
        P(f"Spool on disk at the end: {res.get('scaling_spool_bytes', 0) / 1048576:.0f} MiB.")
        P("")
    if runs:
        P("## Every run")
        P("")
        P("accept msg/s · p99 ms · end-to-end s · other load (CPU cores busy with anything but the server "
          "and smtp-source: other sessions, this script) of each run, in the order they ran "
          "(Postfix, tern, Postfix, tern ...).")
        P("")
        P("| size | conn | c | Postfix runs | tern runs |")
        P("|---|---|--:|---|---|")
        for size, reuse, c in cells:
            cell = [r for r in runs if (r["size"], r["reuse"], r["conc"]) == (size, reuse, c)]
            def one(r):
                if not r["ok"]:
                    return "FAILED"
                return (f"{fmt(r['accept_rate'], 0)} · {fmt(r['p99_ms'], 1)} · {fmt(r['e2e_s'], 2)} "
                        f"· {fmt(r.get('other_load'), 2)}")
            P(f"| {fmt_size(size)} | {'reuse' if reuse else 'new'} | {c} "
              f"| {'; '.join(one(r) for r in cell if r['server'] == 'postfix')} "
              f"| {'; '.join(one(r) for r in cell if r['server'] == 'tern')} |")
        P("")
    P("## Method")
    P("")
    P(textwrap.dedent((method_doc or "").split("Method (also written into the results file):", 1)[-1]).strip())
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
