"""scripts/bench.d/submission.py — `scripts/bench --submission`: mail from a
user's program over port 587 (STARTTLS, then AUTH PLAIN), tern beside
Postfix's submission service, issue 18 point 2.

Three servers, each delivering bench@bench.test into a local Maildir (as in
the main matrix), all with the same certificate (an ECDSA P-256 one made by
openssl for this run) and the same user and password (one argon2id hash,
made by `tern user passwd`, in tern.toml and in Dovecot's passwd-file):
  * tern+dkim: tern signing every message twice (rsa-sha256 with a 2048-bit
    key and ed25519-sha256, keys made by `tern dkim keygen`, `[dkim]`);
  * tern: the same without keys, so nothing is signed;
  * Postfix: a private instance (scripts/postfix-instance) whose one listener
    is a submission service: `smtpd_tls_security_level = encrypt`,
    `smtpd_tls_auth_only = yes`, SASL required (`smtpd_relay_restrictions =
    permit_sasl_authenticated, reject`) through Dovecot's auth
    (`smtpd_sasl_type = dovecot`) — a private Dovecot that runs nothing but
    its auth service on a loopback TCP port, passdb passwd-file. Postfix has
    no DKIM signer of its own; its memory and CPU include that Dovecot's.
Load: submit.c (C, OpenSSL, one thread per session; smtp-source has no TLS
or AUTH), each session from a loopback address of its own (c clients, as c
users would be: tern caps password checks in flight per client address),
`new` = a new connection, TLS handshake (no resumption) and AUTH per message, `reuse` = one session per client thread for all of its
messages. 4 KiB messages From: bench@bench.test. Runs alternate Postfix,
tern, tern+dkim, ... in one window; medians of the runs. Latency: MAIL FROM
written -> the reply to the end of DATA read. The signatures are checked on
a sample of what tern+dkim delivered, with dkimpy (python3-dkim) against the
public keys keygen printed; tern's and Postfix's deliveries must carry none.
"""

import datetime
import glob
import json
import math
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import time

from common import DOMAIN, POSTFIX_INSTANCE, compile_c, log
from procfs import HZ, Sampler, busy_share, machine_ticks, tree_cpu
from report import fmt, mib
from servers import REG, Postfix, Tern, count_dir, free_port, stop_process, wait_delivered

USER, PASSWORD = "bench", "submission-bench-password"
ADDRESS = f"bench@{DOMAIN}"

# What --submission needs beyond the rest of the bench: Debian package, and
# a file that shows it is there.
PACKAGES = {
    "libssl-dev": "/usr/include/openssl/ssl.h",
    "gcc": "/usr/bin/gcc",
    "openssl": "/usr/bin/openssl",
    "dovecot-core": "/usr/sbin/dovecot",
    "python3-dkim": "/usr/lib/python3/dist-packages/dkim/__init__.py",
    "python3-nacl": "/usr/lib/python3/dist-packages/nacl/__init__.py",
}


def ensure_packages():
    missing = [p for p, f in PACKAGES.items() if not os.path.exists(f)]
    if not missing:
        return
    log(f"installing {' '.join(missing)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)


def build_submit(outdir):
    return compile_c("submit.c", os.path.join(outdir, "submit"), ["-pthread", "-lssl", "-lcrypto"],
                     "the submission load generator")


def make_certificate(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "30", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(key, 0o644)  # Postfix's and tern's copies are read as root; this one is scratch
    return cert, key


def password_hash(binary):
    r = subprocess.run([binary, "user", "passwd"], input=PASSWORD + "\n", capture_output=True,
                       text=True, check=True)
    m = re.search(r'password = "(\$argon2id\$[^"]+)"', r.stdout)
    if not m:
        raise RuntimeError(f"tern user passwd printed no hash: {r.stdout!r} {r.stderr!r}")
    return m.group(1)


def dkim_keys(binary, keys_dir):
    """Makes bench.test's two keys; returns {selector: TXT record value}."""
    r = subprocess.run([binary, "dkim", "keygen", "--domain", DOMAIN, "--dir", keys_dir],
                       capture_output=True, text=True, check=True)
    records = {}
    for line in r.stdout.splitlines():
        m = re.match(r"(\S+)\._domainkey\.\S+\s+(?:\d+\s+)?IN\s+TXT\s+(.*)$", line)
        if m:
            records[m.group(1)] = "".join(re.findall(r'"([^"]*)"', m.group(2)))
    if len(records) != 2:
        raise RuntimeError(f"tern dkim keygen printed {len(records)} records: {r.stdout!r}")
    return records


class SubTern(Tern):
    """A tern with a submission listener, the bench's certificate and user."""

    def __init__(self, binary, workdir, dns_port, sub, pw_hash, cert, key, keys_dir=None):
        super().__init__(binary, workdir, free_port(), dns_port, sub=sub, submission_port=free_port())
        self.pw_hash, self.cert, self.tls_key, self.keys_dir = pw_hash, cert, key, keys_dir
        self.name, self.key = ("tern+dkim", "tern-dkim") if keys_dir else ("tern", "tern")
        self.sub_port = self.submission_port

    def write_config(self):
        super().write_config()
        with open(self.config) as f:
            text = f.read()
        text = text.replace('name = "bench"\n', f'name = "bench"\npassword = "{self.pw_hash}"\n', 1)
        text += f'\n[tls]\ncert = "{self.cert}"\nkey = "{self.tls_key}"\n'
        if self.keys_dir:
            text += f'\n[dkim]\nkeys = "{self.keys_dir}"\ndomains = ["{DOMAIN}"]\n'
        with open(self.config, "w") as f:
            f.write(text)


DOVECOT_CONF = """# Written by scripts/bench --submission: Dovecot's auth service alone, for
# Postfix's SASL (smtpd_sasl_type = dovecot).
instance_name = bench-auth-{port}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = none
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=ARGON2ID username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid=5000 gid=5000 home=/nonexistent
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""


class DovecotAuth:
    def __init__(self, workdir, pw_hash):
        self.dir = os.path.join(workdir, "dovecot-auth")
        self.port = free_port()
        os.makedirs(os.path.join(self.dir, "run"), exist_ok=True)
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            f.write(f"{USER}:{{ARGON2ID}}{pw_hash}\n")
        os.chmod(os.path.join(self.dir, "passwd"), 0o644)
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF.format(dir=self.dir, port=self.port))
        self.proc = None

    def start(self):
        logf = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = REG.popen("dovecot", ["/usr/sbin/dovecot", "-F", "-c", self.conf],
                              stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited; see {self.dir}/dovecot.log and stderr.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"dovecot's auth is not listening on {self.port}")
        self.pid = self.proc.pid
        log(f"Dovecot auth pid {self.pid} on 127.0.0.1:{self.port}")

    def stop(self):
        if self.proc:
            stop_process(self.proc, "dovecot", grace=20)
            REG.forget(self.proc)
            self.proc = None


class SubPostfix:
    """Postfix's submission service with Dovecot's SASL: one server of two
    process trees."""

    name, key = "Postfix", "postfix"

    def __init__(self, workdir, pw_hash, cert, key):
        self.auth = DovecotAuth(workdir, pw_hash)
        self.pf = Postfix(workdir, free_port(), sub="postfix-sub", extra=[
            "--tls-cert", cert, "--tls-key", key,
            "--set", "smtpd_tls_security_level=encrypt",
            "--set", "smtpd_tls_auth_only=yes",
            "--set", "smtpd_tls_loglevel=0",
            "--set", "smtpd_sasl_auth_enable=yes",
            "--set", "smtpd_sasl_type=dovecot",
            "--set", f"smtpd_sasl_path=inet:127.0.0.1:{self.auth.port}",
            "--set", "smtpd_relay_restrictions=permit_sasl_authenticated,reject",
            "--set", "smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
        ])
        self.sub_port = self.pf.port

    def start(self):
        self.auth.start()
        self.pf.start()
        self.pid = [self.pf.pid, self.auth.pid]

    def new_dir(self):
        return self.pf.new_dir()

    def queue_empty(self):
        return self.pf.queue_empty()

    def stop(self):
        self.pf.stop()
        self.auth.stop()


# --- one run --------------------------------------------------------------------


def percentile(values, p):
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)] if values else None


def check_signatures(new_dir, records, sample=3):
    """dkimpy's verdict on `sample` delivered messages: (messages, rsa
    passes, ed25519 passes, messages with no signature)."""
    import dkim  # python3-dkim: only this check needs it (ensure_packages installs it)

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        sel = name.split("._domainkey.")[0]
        return records.get(sel, "").encode()

    files = sorted(glob.glob(os.path.join(new_dir, "*")))
    files = random.sample(files, min(sample, len(files)))
    rsa = ed = unsigned = 0
    for path in files:
        with open(path, "rb") as f:
            msg = f.read()
        d = dkim.DKIM(msg)
        sigs = [l for l in msg.split(b"\r\n\r\n" if b"\r\n\r\n" in msg else b"\n\n", 1)[0].splitlines()
                if l.lower().startswith(b"dkim-signature:")]
        if not sigs:
            unsigned += 1
            continue
        for idx in range(len(sigs)):
            ok = d.verify(idx=idx, dnsfunc=dnsfunc)
            alg = d.signature_fields.get(b"a", b"") if hasattr(d, "signature_fields") else b""
            if ok and alg == b"rsa-sha256":
                rsa += 1
            elif ok and alg == b"ed25519-sha256":
                ed += 1
    return {"sampled": len(files), "rsa_pass": rsa, "ed25519_pass": ed, "unsigned": unsigned}


def run_submit(args, srv, reuse, conc, n, tag, records=None):
    new_dir = srv.new_dir()
    args.trash.retire(new_dir)
    subprocess.run(["sync"], timeout=300)
    time.sleep(0.3)
    latfile = os.path.join(args.workdir, f"lat-{tag}.txt")
    cpu0 = tree_cpu(srv.pid)
    sampler = Sampler(srv.pid)
    sampler.start()
    timeout = 120 + n / 10
    machine0 = machine_ticks()
    client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    cmd = [args.submit, "-s", str(conc), "-m", str(n), "-l", "4096", "-u", USER, "-p", PASSWORD,
           "-f", ADDRESS, "-t", ADDRESS, "-o", latfile, "-S", f"127.0.0.1:{srv.sub_port}"]
    if reuse:
        cmd.insert(1, "-r")
    p = REG.popen("submit", cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(p, "submit", grace=5)
        err = b"timed out"
    REG.forget(p)
    accept_s = time.monotonic() - t0
    client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    err = err.decode(errors="replace").strip()
    summary = dict(kv.split("=") for kv in re.findall(r"\b\w+=\d+", err))
    e2e_s = wait_delivered(srv, new_dir, n, t0, timeout)
    cpu1 = tree_cpu(srv.pid)
    machine1 = machine_ticks()
    wall = time.monotonic() - t0
    sampler.finish()
    client_cpu = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
    busy_s = (machine1[0] - machine0[0]) / HZ
    other = max(0.0, busy_s - (cpu1 - cpu0) - client_cpu) / wall if wall > 0 else None
    lats, refused = [], 0
    try:
        with open(latfile) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "250":
                    lats.append(float(parts[1]))
                elif len(parts) == 3:
                    refused += 1
        os.unlink(latfile)
    except FileNotFoundError:
        pass
    lats.sort()
    sig = check_signatures(new_dir, records or {}) if e2e_s else None
    if sig is not None:
        signed_ok = sig["rsa_pass"] == sig["ed25519_pass"] == sig["sampled"] and sig["unsigned"] == 0
        sig["ok"] = signed_ok if records else sig["unsigned"] == sig["sampled"]
    r = {
        "server": srv.key, "reuse": reuse, "conc": conc, "n": n,
        "ok": len(lats) == n and e2e_s is not None and (sig or {}).get("ok", False),
        "accepted": len(lats), "refused": refused, "delivered": count_dir(new_dir),
        "session_retries": int(summary.get("session_retries", 0)), "auth_454": int(summary.get("auth_454", 0)),
        "accept_s": accept_s, "accept_rate": len(lats) / accept_s if accept_s > 0 else None,
        "p50_ms": percentile(lats, 50) * 1000 if lats else None,
        "p99_ms": percentile(lats, 99) * 1000 if lats else None,
        "e2e_s": e2e_s, "e2e_rate": n / e2e_s if e2e_s else None,
        "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss, "peak_procs": sampler.peak_procs,
        "cpu_per_1k": (cpu1 - cpu0) / n * 1000, "client_cpu_per_1k": client_cpu / n * 1000,
        "machine_busy": busy_share(machine0, machine1), "other_load": other, "dkim": sig,
        "client_summary": err[-300:],
    }
    log(f"  {srv.name:9} {'reuse' if reuse else 'new':5} c={conc:<3} accept {fmt(r['accept_rate'], 0)} msg/s, "
        f"p50 {fmt(r['p50_ms'], 2)} ms, p99 {fmt(r['p99_ms'], 2)} ms, peak PSS {mib(r['peak_pss'])} MiB, "
        f"CPU {r['cpu_per_1k']:.2f} s/1k (client {r['client_cpu_per_1k']:.2f}), other load {fmt(other, 2)}; "
        f"dkim {sig}; {'ok' if r['ok'] else 'FAILED: ' + err[-200:]}")
    return r


# --- the whole measurement --------------------------------------------------------


def perf_submission(args, srv, records):
    """`perf record` on tern+dkim at c=10, once while it takes N messages
    with new connections, once N with sessions reused (separate profiles:
    the first is mostly argon2); perf-submission.txt: for each, the shares
    by DSO and the hottest symbols (a stripped binary's own code shows as
    addresses: benchmark a build with symbols for this)."""
    perf = shutil.which("perf")
    if not perf:
        log("perf not found; no profile")
        return None
    out = os.path.join(args.out, "perf-submission.txt")
    with open(out, "w") as f:
        f.write(f"# perf record -e cpu-clock -F 999 -g on {srv.binary} (tern+dkim), c=10\n")
    for reuse in (False, True):
        mode = "reuse" if reuse else "new"
        data = os.path.join(args.workdir, f"perf-submission-{mode}.data")
        p = REG.popen("perf", [perf, "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(srv.pid),
                               "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        n = args.sub_messages_reuse if reuse else args.sub_messages_new
        r = run_submit(args, srv, reuse, 10, n, f"perf-{mode}", records)
        p.send_signal(2)
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            stop_process(p, "perf", grace=5)
        REG.forget(p)
        report = [perf, "report", "-i", data, "--stdio"]
        with open(out, "a") as f:
            f.write(f"\n## {mode} c=10 N={n}: {fmt(r['accept_rate'], 0)} msg/s, CPU {r['cpu_per_1k']:.2f} s/1k\n")
            for title, extra in (
                    ("by thread and DSO", ["--no-children", "--sort", "comm,dso", "-g", "none"]),
                    ("hottest symbols, exclusive", ["--no-children", "--sort", "dso,symbol", "-g", "none",
                                                    "--percent-limit", "0.5"]),
                    ("inclusive (callers included)", ["--children", "--sort", "symbol", "-g", "none",
                                                      "--percent-limit", "2"])):
                f.write(f"\n### {title}\n")
                f.flush()
                subprocess.run(report + extra, stdout=f, stderr=subprocess.DEVNULL, timeout=600)
    log(f"perf report written to {out}")
    return out


def submission(args):
    """Returns (runs, meta)."""
    ensure_packages()
    subprocess.run([POSTFIX_INSTANCE, "install"], check=True, timeout=900)
    args.submit = build_submit(args.out)
    d = os.path.join(args.workdir, "submission")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    cert, key = make_certificate(d)
    pw = password_hash(args.tern)
    keys_dir = os.path.join(d, "dkim")
    records = dkim_keys(args.tern, keys_dir)
    log(f"DKIM keys for {DOMAIN}: selectors {', '.join(sorted(records))}")
    servers = [SubPostfix(args.workdir, pw, cert, key),
               SubTern(args.tern, args.workdir, args.dns_port, "tern-sub", pw, cert, key),
               SubTern(args.tern, args.workdir, args.dns_port, "tern-sub-dkim", pw, cert, key, keys_dir)]
    runs = []
    meta = {"records": records}
    try:
        for srv in servers:
            srv.start()
        time.sleep(1)
        log("warm-up: 100 messages to each (reuse, c=10)")
        for srv in servers:
            run_submit(args, srv, True, 10, 100, f"warmup-{srv.key}", records if srv.key == "tern-dkim" else None)
        cells = [(mode == "reuse", c) for mode in args.mode_list for c in args.conc]
        for ci, (reuse, c) in enumerate(cells, 1):
            n = args.sub_messages_reuse if reuse else args.sub_messages_new
            log(f"cell {ci}/{len(cells)}: {'reuse' if reuse else 'new'}, c={c}, N={n}, "
                f"{args.runs} run(s) each, alternating")
            for run in range(args.runs):
                for srv in servers:
                    r = run_submit(args, srv, reuse, c, n, f"{srv.key}-{int(reuse)}-{c}-{run}",
                                   records if srv.key == "tern-dkim" else None)
                    r["run"] = run
                    runs.append(r)
        if args.perf:
            meta["perf"] = perf_submission(args, servers[2], records)
    finally:
        for srv in reversed(servers):
            srv.stop()
    return runs, meta


def write_submission(args, runs, meta, versions):
    med = lambda rs, k: statistics.median([r[k] for r in rs if r.get(k) is not None]) if rs else None
    lines = ["# Submission (587, STARTTLS + AUTH PLAIN): tern with and without DKIM signing beside "
             "Postfix + Dovecot SASL — scripts/bench --submission", "",
             f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; {versions}",
             f"- 4 KiB messages, N = {args.sub_messages_new} per run with a new connection (TCP, full TLS 1.3 "
             f"handshake, AUTH) per message, {args.sub_messages_reuse} per run with sessions reused; "
             f"{args.runs} run(s) per server and cell, alternating Postfix, tern, tern+dkim; medians",
             "- all three deliver into a local Maildir; same ECDSA P-256 certificate, same argon2id "
             "password hash (m=19456 KiB, t=2: tern's default) in tern.toml and Dovecot's passwd-file",
             "- tern+dkim: two signatures per message, rsa-sha256 (2048-bit) and ed25519-sha256; Postfix "
             "signs nothing (no signer of its own); its memory and CPU include Dovecot's auth",
             "- latency: MAIL FROM written -> reply to the end of DATA; CPU: the server's process tree(s) per "
             "1,000 messages; client: the load generator's (submit.c) CPU per 1,000; other load: the "
             "machine's busy time outside server and client, in cores", "",
             "| mode | c | server | accept msg/s | vs Postfix | p50 ms | p99 ms | e2e msg/s | peak RSS MiB | "
             "peak PSS MiB | CPU s/1k | client CPU s/1k | other load | login retries | DKIM check |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = [("postfix", "Postfix"), ("tern", "tern"), ("tern-dkim", "tern+dkim")]
    summary = []
    for mode in args.mode_list:
        for c in args.conc:
            reuse = mode == "reuse"
            cell = [r for r in runs if r["reuse"] == reuse and r["conc"] == c]
            pf_rate = med([r for r in cell if r["server"] == "postfix" and r["ok"]], "accept_rate")
            for key, name in order:
                rs = [r for r in cell if r["server"] == key and r["ok"]]
                rate = med(rs, "accept_rate")
                ratio = rate / pf_rate if rate and pf_rate else None
                sigs = [r["dkim"] for r in cell if r["server"] == key and r.get("dkim")]
                if key == "tern-dkim":
                    check = (f"{sum(s['rsa_pass'] for s in sigs)} rsa + {sum(s['ed25519_pass'] for s in sigs)} "
                             f"ed25519 pass / {sum(s['sampled'] for s in sigs)} sampled")
                else:
                    check = f"{sum(s['unsigned'] for s in sigs)}/{sum(s['sampled'] for s in sigs)} unsigned"
                failed = len([r for r in cell if r["server"] == key and not r["ok"]])
                lines.append(
                    f"| {mode} | {c} | {name} | {fmt(rate, 0)}{f' ({failed} failed)' if failed else ''} | "
                    f"{fmt(ratio, 2) + 'x' if key != 'postfix' and ratio else ''} | "
                    f"{fmt(med(rs, 'p50_ms'), 2)} | {fmt(med(rs, 'p99_ms'), 2)} | {fmt(med(rs, 'e2e_rate'), 0)} | "
                    f"{mib(med(rs, 'peak_rss')) if rs else '-'} | {mib(med(rs, 'peak_pss')) if rs else '-'} | "
                    f"{fmt(med(rs, 'cpu_per_1k'), 2)} | {fmt(med(rs, 'client_cpu_per_1k'), 2)} | "
                    f"{fmt(med(rs, 'other_load'), 2)} | {sum(r['session_retries'] for r in rs)} | {check} |")
                summary.append((mode, c, key, rate, ratio))
    failed = [r for r in runs if not r["ok"]]
    if failed:
        lines += ["", f"{len(failed)} run(s) failed: " + "; ".join(
            f"{r['server']} {'reuse' if r['reuse'] else 'new'} c={r['conc']}: {r['accepted']} accepted, "
            f"{r['refused']} refused, dkim {r['dkim']}, client: {r['client_summary'][-120:]}" for r in failed)]
    lines += ["", "Login retries: sessions whose AUTH was answered 454 (tern: more than 4 password checks "
              "running and 128 waiting, 32 before commit 226a9b0; or more than 5 logins in flight from one "
              "address) or that could not be opened, tried again by the client after 20 ms; summed over "
              "the runs."]
    out = os.path.join(args.out, "submission.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "submission.json"), "w") as f:
        json.dump({"runs": runs, "meta": meta}, f, indent=1, default=str)
    print("\n".join(lines))
    log(f"written to {out}")
