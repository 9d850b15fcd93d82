"""scripts/bench.d/common.py — what the benchmark's modules share: paths,
the test domain, logging to stderr, and the exception a signal raises."""

import os
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DOMAIN = "bench.test"
SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX_INSTANCE = os.path.join(REPO, "scripts", "postfix-instance")


def compile_c(name, out, flags, what):
    """Compiles scripts/bench.d/NAME into OUT (cc FLAGS), unless OUT is newer
    than the source; `what` names it in the error when there is no compiler.
    Returns OUT."""
    src = os.path.join(HERE, name)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise RuntimeError(f"a C compiler (cc) is needed for {what}: apt-get install gcc")
        # Options and libraries after the source, where the linker wants them.
        subprocess.run([cc, "-O2", "-o", out, src, *flags], check=True)
    return out


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    """Raised by the signal handler, so that cleanup runs."""


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)
