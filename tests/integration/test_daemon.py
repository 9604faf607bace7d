#!/usr/bin/python3
"""The daemon's life: SIGHUP reloads (good and bad files), SIGTERM with a grace period,
IPv6 and several listeners, the privilege drop, the spool read at start, and
`kurierd -t`. Everything is checked as a user sees it: replies, Maildir files, log
lines, exit codes, `ps`."""

import os
import pwd
import re
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from conftest import KURIERD, SAFETY, Raw, free_port, wait_port

MSG = b"From: a@remote.test\r\nTo: demo@example.test\r\nSubject: %s\r\n\r\nbody\r\n"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def send(port, subject, host="127.0.0.1", rcpt="demo@example.test"):
    with smtplib.SMTP(host, port, timeout=10) as s:
        assert s.sendmail("a@remote.test", [rcpt], MSG % subject.encode()) == {}


def greeting(port, host="127.0.0.1"):
    c = Raw(port, host=host)
    try:
        return c.reply()
    finally:
        c.close()


def begin_transaction(c):
    """Greeting, EHLO, MAIL and one RCPT for demo@example.test on the Raw c."""
    assert c.reply()[0] == 220
    c.cmd("EHLO client.example")
    assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
    assert c.cmd("RCPT TO:<demo@example.test>")[0] == 250


def rewrite_conf(k, old, new):
    with open(k.conf) as f:
        text = f.read()
    assert old in text, text
    with open(k.conf, "w") as f:
        f.write(text.replace(old, new, 1))


def wait_exit(k, timeout=SAFETY):
    """Wait for the daemon process to end by itself; returns its exit code."""
    rc = k.proc.wait(timeout=timeout)
    k.stop()  # reaps nothing more, closes the log file
    return rc


def started(kurier_factory, **kw):
    k = kurier_factory(**kw)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    return ready(k.start())


def ready(k):
    """The port accepts connections before kurierd has its signal handlers (see
    test_signal_right_after_the_port_opens); tests about other things wait for the
    last line of the start-up."""
    k.wait_log("daemon started")
    return k


# --- SIGHUP ---------------------------------------------------------------------------

def test_sighup_applies_a_changed_config(kurier):
    ready(kurier)
    code, text = greeting(kurier.port)
    assert code == 220 and "mx.example.test ESMTP" in text, text
    rewrite_conf(kurier, "hostname mx.example.test;", "hostname mx2.example.test;")
    rewrite_conf(kurier, "limits {\n", "limits {\n    recipients 2;\n")
    kurier.proc.send_signal(signal.SIGHUP)
    kurier.wait_log("reloaded configuration from %s" % kurier.conf)
    code, text = greeting(kurier.port)
    assert code == 220 and "mx2.example.test ESMTP" in text, text
    # the new recipient limit holds on a new connection
    c = Raw(kurier.port)
    try:
        begin_transaction(c)
        assert c.cmd("RCPT TO:<demo@example.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<demo@example.test>")
        assert code == 452 and "4.5.3" in text, text
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: after reload\r\n\r\nbody\r\n.\r\n")
        code, text = c.reply()
        assert code == 250, text
    finally:
        c.close()
    body = read(kurier.wait_mail("demo@example.test")[0])
    assert b"by mx2.example.test (kurier)" in body
    assert kurier.proc.poll() is None


def test_sighup_during_a_transaction(kurier):
    ready(kurier)
    c = Raw(kurier.port)
    try:
        begin_transaction(c)
        rewrite_conf(kurier, "hostname mx.example.test;", "hostname mx3.example.test;")
        kurier.proc.send_signal(signal.SIGHUP)
        kurier.wait_log("reloaded configuration")
        # the open session goes on undisturbed
        assert c.cmd("RCPT TO:<demo@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: across a reload\r\n\r\nbody\r\n.\r\n")
        code, text = c.reply()
        assert code == 250 and "queued as" in text, text
        assert c.cmd("QUIT")[0] == 221
    finally:
        c.close()
    files = kurier.wait_mail("demo@example.test")
    assert b"Subject: across a reload" in read(files[0])
    code, text = greeting(kurier.port)
    assert code == 220 and "mx3.example.test ESMTP" in text, text


def test_sighup_with_broken_config_keeps_the_old_one(kurier):
    ready(kurier)
    with open(kurier.conf) as f:
        lines = f.read().split("\n")
    # an unknown key on its own line, indented: the error must name line and column
    lines.insert(1, "  no_such_key 1;")
    with open(kurier.conf, "w") as f:
        f.write("\n".join(lines))
    kurier.proc.send_signal(signal.SIGHUP)
    kurier.wait_log("reload refused")
    log = kurier.log()
    refused = [l for l in log.splitlines() if "reload refused" in l]
    assert any("%s:2:3" % kurier.conf in l for l in refused), refused
    assert any("no_such_key" in l for l in refused), refused
    assert "reloaded configuration" not in log
    # the daemon is still up with the old settings and still takes mail
    assert kurier.proc.poll() is None
    code, text = greeting(kurier.port)
    assert code == 220 and "mx.example.test ESMTP" in text, text
    send(kurier.port, "still here")
    assert b"Subject: still here" in read(kurier.wait_mail("demo@example.test")[0])


# --- SIGTERM --------------------------------------------------------------------------

def test_sigterm_lets_a_transaction_finish(kurier_factory):
    # the grace is a safety net: the daemon ends as soon as the session is over
    k = started(kurier_factory, limits={"shutdown_grace": "5m"})
    c = Raw(k.port)
    try:
        begin_transaction(c)
        k.proc.send_signal(signal.SIGTERM)
        k.wait_log("stopping: no new connections")
        # new connections are refused while the session finishes
        with pytest.raises(OSError):
            Raw(k.port, timeout=3).reply()
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: in flight\r\n\r\nbody\r\n.\r\n")
        code, text = c.reply()
        assert code == 250 and "queued as" in text, text
        # after the transaction the session is told to go (421) or may QUIT
        try:
            c.send(b"QUIT\r\n")
            code, text = c.reply()
            assert code in (221, 421), text
        except (EOFError, OSError):
            pass
    finally:
        c.close()
    assert wait_exit(k) == 0
    assert "stopped" in k.log()
    # the message was acknowledged, so it is delivered (now or after a restart)
    k.start()
    files = k.wait_mail("demo@example.test")
    assert b"Subject: in flight" in read(files[0])


def test_sigterm_grace_over_closes_idle_session(kurier_factory):
    k = started(kurier_factory, limits={"shutdown_grace": "1s"})
    c = Raw(k.port)
    try:
        assert c.reply()[0] == 220
        c.cmd("EHLO client.example")
        k.proc.send_signal(signal.SIGTERM)
        c.s.settimeout(SAFETY)
        code, text = c.reply()
        assert code == 421 and "4.3.2" in text, text
        assert c.closed()
    finally:
        c.close()
    assert wait_exit(k) == 0
    log = k.log()
    assert re.search(r"grace period over: closing [1-9]\d* sessions", log), log
    assert "stopped" in log


def test_sigterm_without_sessions_exits_at_once_with_0(kurier):
    ready(kurier)
    # "at once" is not measured; the process just has to end by itself, with 0
    kurier.proc.send_signal(signal.SIGTERM)
    assert wait_exit(kurier) == 0


def test_signal_right_after_the_port_opens(kurier_factory):
    """A reload (or stop) sent as soon as kurierd accepts connections must be handled,
    not kill the daemon: the signal handlers have to be in place before the ports
    open. Tried a few times, as the window is short on a fast build."""
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    for attempt in range(5):
        k.start()
        k.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + SAFETY
        while "reloaded configuration" not in k.log() and time.time() < deadline:
            assert k.proc.poll() is None, "SIGHUP killed kurierd (attempt %d): exit %s" % (
                attempt, k.proc.returncode)
            time.sleep(0.05)
        ready(k)
        k.wait_log("reloaded configuration")
        assert k.stop() == 0
        with open(k.logfile, "w"):
            pass  # the next round looks at a fresh log
    for attempt in range(5):
        k.start()
        k.proc.send_signal(signal.SIGTERM)
        rc = k.proc.wait(timeout=SAFETY)
        k.stop()
        assert rc == 0, "SIGTERM right after start: exit %s (attempt %d)" % (rc, attempt)


# --- listeners ------------------------------------------------------------------------

def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not have_ipv6_loopback(), reason="no ::1 on this machine")
def test_ipv6_listener(kurier_factory):
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port6 = s.getsockname()[1]
    k = started(kurier_factory, extra="listen [::1]:%d {\n    role mx;\n}\n" % port6)
    wait_port("::1", port6, proc=k.proc)
    code, text = greeting(port6, host="::1")
    assert code == 220 and "mx.example.test ESMTP" in text, text
    send(port6, "over ipv6", host="::1")
    body = read(k.wait_mail("demo@example.test")[0])
    assert b"Subject: over ipv6" in body
    assert b"::1" in body.split(b"\n\n", 1)[0]  # the Received header names the client
    log = k.log()
    assert "listening on [::1]:%d" % port6 in log
    assert "connect from unknown[::1]" in log


def test_two_listeners(kurier_factory):
    port2 = free_port()
    k = started(kurier_factory, extra="listen 127.0.0.1:%d {\n    role mx;\n}\n" % port2)
    wait_port("127.0.0.1", port2, proc=k.proc)
    log = k.log()
    assert "listening on 127.0.0.1:%d" % k.port in log
    assert "listening on 127.0.0.1:%d" % port2 in log
    send(k.port, "first listener")
    send(port2, "second listener")
    files = k.wait_mail("demo@example.test", count=2)
    subjects = sorted(re.search(rb"Subject: (.*)", read(f)).group(1) for f in files)
    assert subjects == [b"first listener", b"second listener"]


# --- privileges -----------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_privilege_drop_to_kurier(kurier):
    try:
        pwd.getpwnam("kurier")
    except KeyError:
        pytest.skip("no user kurier")
    r = subprocess.run(["ps", "-o", "user=", "-p", str(kurier.proc.pid)],
                       capture_output=True, timeout=10)
    assert r.stdout.decode().strip() == "kurier", r.stdout
    r = subprocess.run(["ps", "-o", "ruser=,euser=", "-p", str(kurier.proc.pid)],
                       capture_output=True, timeout=10)
    assert r.stdout.decode().split() == ["kurier", "kurier"], r.stdout
    send(kurier.port, "owned")
    f = kurier.wait_mail("demo@example.test")[0]
    assert pwd.getpwuid(os.stat(f).st_uid).pw_name == "kurier"
    # the Maildir folders as well, so Dovecot running as that user can read them
    md = os.path.dirname(os.path.dirname(f))
    for sub in ("", "new", "cur", "tmp"):
        assert pwd.getpwuid(os.stat(os.path.join(md, sub)).st_uid).pw_name == "kurier", sub


# --- the spool survives a stop --------------------------------------------------------

def test_message_acknowledged_before_stop_is_delivered_after_restart(kurier):
    ready(kurier)
    send(kurier.port, "stop right after")
    assert kurier.stop() == 0
    kurier.start()
    files = kurier.wait_mail("demo@example.test")
    kurier.wait_queue_empty()  # a duplicate would come from the queue
    files = kurier.maildir_new("demo@example.test")
    assert len(files) == 1, files
    assert b"Subject: stop right after" in read(files[0])


def test_deferred_message_is_delivered_by_the_next_daemon(kurier):
    ready(kurier)
    # The mailbox path is blocked by a plain file: delivery fails temporarily.
    dom = os.path.join(kurier.maildir_root, "example.test")
    os.makedirs(dom, exist_ok=True)
    if os.geteuid() == 0:  # the daemon runs as user kurier and creates folders here
        pw = pwd.getpwnam("kurier")
        for d in (kurier.maildir_root, dom):
            os.chown(d, pw.pw_uid, pw.pw_gid)
    blocker = os.path.join(dom, "demo")
    with open(blocker, "w") as f:
        f.write("not a folder\n")
    send(kurier.port, "queued across a restart")
    kurier.wait_log("status=deferred")
    assert kurier.stop() == 0
    out = kurier.cli("queue", "list").stdout.decode()
    assert "demo@example.test" in out, out
    os.unlink(blocker)
    kurier.start()
    files = kurier.wait_mail("demo@example.test")
    assert len(files) == 1
    assert b"Subject: queued across a restart" in read(files[0])


# --- kurierd -t -----------------------------------------------------------------------

def test_kurierd_t_good_file(kurier_factory):
    k = kurier_factory()
    r = subprocess.run([KURIERD, "-t", "-c", k.conf], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert ("%s: ok" % k.conf).encode() in r.stdout


def test_kurierd_t_bad_file(kurier_factory):
    k = kurier_factory()
    with open(k.conf) as f:
        text = f.read()
    lines = text.split("\n")
    at = lines.index("limits {") + 1
    lines.insert(at, "    recipients many;")
    with open(k.conf, "w") as f:
        f.write("\n".join(lines))
    r = subprocess.run([KURIERD, "-t", "-c", k.conf], capture_output=True, timeout=30)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert re.search(r"%s:%d:\d+: " % (re.escape(k.conf), at + 1), err), err
    assert "recipients" in err, err
    assert b"ok" not in r.stdout


def test_kurierd_t_missing_file(tmp_path):
    path = str(tmp_path / "nonexistent.conf")
    r = subprocess.run([KURIERD, "-t", "-c", path], capture_output=True, timeout=30)
    assert r.returncode != 0
    assert path in r.stderr.decode(), r.stderr
