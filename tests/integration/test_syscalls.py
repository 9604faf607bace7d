#!/usr/bin/python3
"""System calls per message, counted with strace -f -c on the running kurierd (no
timing read): a log line costs no getpid() (bench/PROFILE.md, "100 sessions")."""

import re
import shutil
import signal
import smtplib
import socket
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


def send_n(kurier):
    """N messages, one session each, to the local mailbox; returns when all are in."""
    for i in range(N):
        with smtplib.SMTP("127.0.0.1", kurier.port, timeout=SAFETY) as s:
            s.sendmail("alice@sender.test", ["demo@example.test"],
                       "Subject: %d\r\n\r\nhello\r\n" % i)
    kurier.wait_mail("demo@example.test", N)


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_log_lines_make_no_getpid_call(kurier):
    counts = strace_counts(kurier, ["getpid"], lambda: send_n(kurier))
    # 7 per message before (one per log line: connect, queued, delivered, ...); 2 now
    # (not the log's: the Maildir file name has the pid, and one more call)
    assert counts.get("getpid", 0) < 4 * N, counts
    assert kurier.log().count("status=sent") >= N


ZONES = """
    local-zone: "test." nodefault
    local-zone: "clients.test." static
    local-data: "good.clients.test. 60 IN A 127.0.0.7"
    local-zone: "0.0.127.in-addr.arpa." static
    local-data-ptr: "127.0.0.7 good.clients.test"
    local-zone: "." static
"""


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_client_name_is_remembered_for_its_ttl(kurier_factory):
    """The reverse lookup of a client seen a moment ago is answered from kurier's own
    small cache: no round trip through libunbound's pipes (4 fcntl around each write
    there), and the same confirmed name."""
    import peers
    with peers.unbound(ZONES, "clients.test") as resolver:
        k = kurier_factory(extra="resolver %s;\n" % resolver, reverse_dns=True)
        k.start()

        def session():
            s = socket.socket()
            s.bind(("127.0.0.7", 0))
            s.settimeout(SAFETY)
            s.connect(("127.0.0.1", k.port))
            f = s.makefile("rb")
            assert f.readline().startswith(b"220 ")
            s.sendall(b"QUIT\r\n")
            assert f.readline().startswith(b"221 ")
            s.close()

        session()  # the first one asks
        k.wait_log("connect from good.clients.test[127.0.0.7]")
        counts = strace_counts(k, ["fcntl"], lambda: [session() for _ in range(N)])
        # before: PTR and A through libunbound's pipes, 16 fcntl per session
        assert counts.get("fcntl", 0) < N, counts
        k.wait_log_count(": connect from good.clients.test[127.0.0.7]", N + 1)


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_replies_arm_no_write_event(kurier):
    """A plain session's replies are written when the callback that made them returns:
    no write event is armed and dropped (two epoll_ctl calls) for each reply."""
    counts = strace_counts(kurier, ["epoll_ctl"], lambda: send_n(kurier))
    # 7 replies per session (banner, EHLO, MAIL, RCPT, DATA, 250, QUIT) armed and
    # dropped a write event each before (14 calls); now 2: the connection's own
    assert counts.get("epoll_ctl", 0) < 6 * N, counts
    assert kurier.log().count("status=sent") >= N
