"""scripts/bench.d/common.py — what the benchmark's modules share: paths,
the test domain, logging to stderr, and the exception a signal raises."""

import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DOMAIN = "bench.test"
SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX_INSTANCE = os.path.join(REPO, "scripts", "postfix-instance")


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    """Raised by the signal handler, so that cleanup runs."""


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)
