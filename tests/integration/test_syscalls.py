#!/usr/bin/python3
"""System calls per message, counted with strace -f -c on the running kurierd (no
timing read): a log line costs no getpid() (bench/PROFILE.md, "100 sessions")."""

import re
import shutil
import signal
import smtplib
import subprocess

import pytest

from conftest import SAFETY

N = 20


def strace_counts(k, calls, action):
    """Run action() with strace -f -c counting calls on kurierd. {name: count}."""
    out = k.dir + "/strace.out"
    p = subprocess.Popen(["strace", "-f", "-c", "-e", "trace=" + ",".join(calls), "-o", out,
                          "-p", str(k.proc.pid)], stderr=subprocess.PIPE)
    try:
        line = p.stderr.readline().decode(errors="replace")  # "Process N attached ..."
        if "attached" not in line:
            pytest.skip("strace cannot attach here: " + line.strip())
        action()
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=SAFETY)
    counts = {}
    with open(out) as f:
        for row in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", row)
            if m and m.group(2) != "total":
                counts[m.group(2)] = int(m.group(1))
    return counts


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_log_lines_make_no_getpid_call(kurier):
    def send():
        for i in range(N):
            with smtplib.SMTP("127.0.0.1", kurier.port, timeout=SAFETY) as s:
                s.sendmail("alice@sender.test", ["demo@example.test"],
                           "Subject: %d\r\n\r\nhello\r\n" % i)
        kurier.wait_mail("demo@example.test", N)

    counts = strace_counts(kurier, ["getpid"], send)
    # 7 per message before (one per log line: connect, queued, delivered, ...); 2 now
    # (not the log's: the Maildir file name has the pid, and one more call)
    assert counts.get("getpid", 0) < 4 * N, counts
    assert kurier.log().count("status=sent") >= N
