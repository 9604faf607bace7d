#!/usr/bin/python3
"""Config lifetime across reloads (issue 10 item 5): an old configuration is freed
when the last session or job that started with it ends, not kept until exit. Two
hundred reloads (SIGHUP and the control socket's `reload`) with sessions open leave
the daemon's memory flat, and the sessions opened before or between the reloads
still finish their messages with the configuration they started with."""

import os
import re
import signal
import socket
import time

from conftest import SAFETY, Raw, free_port
from test_daemon import begin_transaction, read, ready

RELOADS = 200
WARMUP = 20
# Transport blocks that make one configuration big enough to see (a few hundred KiB
# in memory): 200 kept configurations grow the daemon by far more than the margin.
TRANSPORTS = 1000
# Growth allowed over the 200 reloads, whatever their count: allocator noise, not
# one configuration per reload.
MARGIN_KB = 8 * 1024

MSG = b"From: a@remote.test\r\nTo: demo@example.test\r\nSubject: %s\r\n\r\nbody\r\n.\r\n"


def big_config(dead_port):
    lines = []
    for i in range(TRANSPORTS):
        lines.append("transport d%04d.example {\n"
                     "    relay r%04d.relay.example.net:2525 b%04d.relay.example.net:2526;\n"
                     "    tls may;\n}\n" % (i, i, i))
    # a message for remote.test is retried all along: scheduler and delivery jobs
    # start and end with whichever configuration is current
    lines.append("transport remote.test {\n    relay 127.0.0.1:%d;\n    tls none;\n}\n"
                 % dead_port)
    lines.append("relay {\n    trusted_networks 127.0.0.0/8;\n}\n")
    return "".join(lines)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def set_hostname(k, name):
    with open(k.conf) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^hostname [^;]*;", "hostname %s;" % name, text, count=1)
    assert n == 1
    with open(k.conf, "w") as f:
        f.write(text)


def control_reload(k):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(SAFETY)
        s.connect(os.path.join(k.dir, "var", "control.sock"))
        s.sendall(b"reload\n")
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    finally:
        s.close()
    assert answer.startswith(b"ok reloaded"), answer


class Reloader:
    """Reloads k with a new hostname each time and waits until it took effect."""

    def __init__(self, k):
        self.k = k
        self.n = 0

    def count(self):
        return self.k.log().count("reloaded configuration from")

    def reload(self):
        self.n += 1
        set_hostname(self.k, "mx%d.example.test" % self.n)
        if self.n % 4 == 0:
            control_reload(self.k)  # done when it answers
        else:
            self.k.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + SAFETY
        while self.count() < self.n:
            assert self.k.proc.poll() is None, self.k.log()[-3000:]
            assert time.time() < deadline, "reload %d not done:\n%s" % (
                self.n, self.k.log()[-3000:])
            time.sleep(0.01)
        return "mx%d.example.test" % self.n


def finish(c, subject):
    """DATA and a whole message on Raw c (in a transaction with one recipient)."""
    assert c.cmd("DATA")[0] == 354
    c.send(MSG % subject)
    code, text = c.reply()
    assert code == 250 and "queued as" in text, text
    assert c.cmd("QUIT")[0] == 221


def received_by(k, subject, count):
    """The host name in our Received: line of the message with subject."""
    for path in k.wait_mail("demo@example.test", count=count):
        body = read(path)
        if b"Subject: " + subject in body:
            m = re.search(rb"Received: from [^\n]*\r?\n\tby (\S+) \(kurier\)", body)
            assert m, body[:600]
            return m.group(1).decode()
    raise AssertionError("no message %r" % subject)


def test_reloads_free_old_configs_while_sessions_finish(kurier_factory, monkeypatch):
    # ASan keeps freed memory in quarantine (256 MB by default) before reusing it:
    # with a small one, memory given back shows in the RSS as it does without ASan.
    monkeypatch.setenv("ASAN_OPTIONS", (os.environ.get("ASAN_OPTIONS", "") +
                                        ":quarantine_size_mb=4").lstrip(":"))
    k = kurier_factory(extra=big_config(free_port()))
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    ready(k.start())
    conns = []
    try:
        # opened with the first configuration: one idle after RCPT, one in the middle
        # of the message's content, one only greeted
        a = Raw(k.port)
        conns.append(a)
        begin_transaction(a)
        b = Raw(k.port)
        conns.append(b)
        begin_transaction(b)
        assert b.cmd("DATA")[0] == 354
        b.send(b"From: a@remote.test\r\nTo: demo@example.test\r\nSubject: mid-data\r\n")
        c = Raw(k.port)
        conns.append(c)
        assert c.reply()[0] == 220
        # a message for the remote transport, deferred and retried during the reloads
        r = Raw(k.port)
        conns.append(r)
        assert r.reply()[0] == 220
        r.cmd("EHLO client.example")
        assert r.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert r.cmd("RCPT TO:<someone@remote.test>")[0] == 250
        finish(r, b"to the remote transport")

        rl = Reloader(k)
        for _ in range(WARMUP):
            rl.reload()
        before = rss_kb(k.proc.pid)
        for i in range(RELOADS):
            name = rl.reload()
            if i == RELOADS // 2:
                # opened between reloads: holds that configuration to the end
                d = Raw(k.port)
                conns.append(d)
                code, text = d.reply()
                assert code == 220 and name in text, text
                d_name = name
                d.cmd("EHLO client.example")
                assert d.cmd("MAIL FROM:<a@remote.test>")[0] == 250
                assert d.cmd("RCPT TO:<demo@example.test>")[0] == 250
        after = rss_kb(k.proc.pid)
        assert after - before < MARGIN_KB, (
            "RSS grew by %d kB over %d reloads (from %d kB to %d kB)" % (
                after - before, RELOADS, before, after))
        k.wait_log("status=deferred")  # delivery jobs ran meanwhile

        # every session still finishes its message, with its own configuration
        finish(a, b"idle after RCPT")
        b.send(b"\r\nbody\r\n.\r\n")
        code, text = b.reply()
        assert code == 250 and "queued as" in text, text
        assert b.cmd("QUIT")[0] == 221
        c.cmd("EHLO client.example")
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<demo@example.test>")[0] == 250
        finish(c, b"greeted only")
        finish(d, b"opened between reloads")
        assert received_by(k, b"idle after RCPT", 4) == "mx.example.test"
        assert received_by(k, b"mid-data", 4) == "mx.example.test"
        assert received_by(k, b"greeted only", 4) == "mx.example.test"
        assert received_by(k, b"opened between reloads", 4) == d_name
        # new sessions have the last configuration
        e = Raw(k.port)
        conns.append(e)
        code, text = e.reply()
        assert code == 220 and "mx%d.example.test" % rl.n in text, text
    finally:
        for conn in conns:
            conn.close()
    assert k.stop() == 0, k.log()[-3000:]
    assert "AddressSanitizer" not in k.log() and "runtime error" not in k.log()
