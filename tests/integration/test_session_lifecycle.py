#!/usr/bin/python3
"""Session lifecycle (issue 9, items 1, 2 and 4): a session is freed when its client
goes, whatever it left unread; a client that does not read its replies costs bounded
memory and cannot hold a connection slot or the shutdown; every asynchronous step a
session waits on (verdicts, commit, AUTH check, client-name lookup) finds it alive or
is cancelled (run under the ASan build: a use after free aborts the daemon); and no
trace logs credentials.

Slow verdicts and commits come from the daemon's test hook KURIER_TEST_DELAY
(kurierd.c), standing in for a slow check or a slow disk; the AUTH check waits on
the real brute-force delay, the name lookup on a resolver that never answers."""

import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import Raw

HELP = b"HELP\r\n"


def b64(s):
    return base64.b64encode(s.encode()).decode()


def set_debug(k, subsystems="smtp"):
    """Switch the daemon's log to debug level for subsystems."""
    with open(k.conf) as f:
        text = f.read()
    with open(k.conf, "w") as f:
        f.write(text.replace("    level info;\n",
                             "    level debug;\n    debug \"%s\";\n" % subsystems))


def open_sessions(k):
    log = k.log()
    return log.count(": connect from ") - log.count(": disconnect from ")


def wait_sessions(k, n, timeout=60):
    """Wait until n sessions are open (counted from the log's connect/disconnect)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if open_sessions(k) <= n:
            return
        time.sleep(0.1)
    raise AssertionError("%d sessions still open:\n%s" % (open_sessions(k), k.log()[-3000:]))


def assert_alive(k):
    assert k.proc.poll() is None, "kurierd died:\n" + k.log()[-4000:]
    assert "ERROR: AddressSanitizer" not in k.log()
    assert "runtime error:" not in k.log()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def flood(port, total, block_for=3.0, close=True):
    """Connect, pipeline HELP without ever reading the replies until total bytes are
    sent or the server stopped reading for block_for seconds; returns (socket, sent)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(block_for)
    chunk = HELP * 10000
    sent = 0
    try:
        while sent < total:
            sent += s.send(chunk)
    except socket.timeout:
        pass
    if close:
        s.close()
    return s, sent


def greeted(port):
    """The first reply of a new connection: (code, text)."""
    r = Raw(port)
    try:
        return r.reply()
    finally:
        r.close()


@pytest.fixture
def small_asan_quarantine(monkeypatch):
    # ASan keeps freed memory in a quarantine (256 MB by default), which would hide
    # what the daemon itself holds; the RSS measured should be the daemon's
    opts = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (opts + ":" if opts else "") + "quarantine_size_mb=4")


# --- item 1: closed sessions are freed; unread replies are bounded ---------------------


def test_clients_that_never_read_do_not_keep_their_slots(kurier_factory):
    k = kurier_factory(limits={"connections": 6})
    k.add_domain("example.test")
    k.start()
    wait_sessions(k, 0)
    for _ in range(6):  # each fills its buffers with unread replies, then hangs up
        flood(k.port, 2 * 1024 * 1024, block_for=1.0)
    # every one of them is freed, and later clients are served again
    wait_sessions(k, 0)
    for _ in range(8):
        code, text = greeted(k.port)
        assert code == 220, text
    assert_alive(k)
    assert k.log().count("too many connections") == 0
    assert k.stop() == 0


def test_unread_replies_do_not_grow_memory(kurier_factory, small_asan_quarantine):
    """30 MB of pipelined HELP whose replies are never read: the daemon stops reading
    the client (its replies would be 500 MB) instead of buffering them."""
    k = kurier_factory()
    k.add_domain("example.test")
    k.start()
    time.sleep(0.5)
    before = rss_kib(k.proc.pid)
    s, sent = flood(k.port, 30 * 1024 * 1024, block_for=5.0, close=False)
    grown = rss_kib(k.proc.pid) - before
    assert grown < 64 * 1024, "RSS grew by %d KiB after %d bytes of HELP" % (grown, sent)
    assert sent < 30 * 1024 * 1024  # the server stopped reading a client that does not read
    s.close()
    wait_sessions(k, 0)
    assert_alive(k)
    assert k.stop() == 0


def test_a_client_that_reads_late_gets_every_reply(kurier):
    """Commands wait while their replies are not read, and are all answered, in order,
    once the client reads."""
    n = 150000  # 14 MB of replies: well past what the daemon holds for a client
    s = socket.create_connection(("127.0.0.1", kurier.port), timeout=60)
    sender = threading.Thread(target=s.sendall, args=(HELP * n + b"QUIT\r\n",))
    sender.start()
    time.sleep(2)  # the client reads nothing for a while
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    for i in range(n):
        line = f.readline()
        assert line.startswith(b"214 "), (i, line)
    assert f.readline().startswith(b"221 ")
    sender.join()
    s.close()
    assert_alive(kurier)


def test_sigterm_ends_with_clients_that_never_read(kurier_factory):
    k = kurier_factory(limits={"shutdown_grace": "1s"})
    k.add_domain("example.test")
    k.start()
    socks = [flood(k.port, 8 * 1024 * 1024, block_for=1.0, close=False)[0] for _ in range(3)]
    try:
        # a generous safety deadline only: the daemon must end by itself
        assert k.stop(timeout=90) == 0, k.log()[-3000:]
        assert "stopped" in k.log()
        assert "still open" not in k.log()  # not the daemon's last-resort deadline
    finally:
        for s in socks:
            s.close()


# --- item 2: hang up while the session waits ---------------------------------------------


def mx_with_delays(kurier_factory, monkeypatch, delay, **kw):
    monkeypatch.setenv("KURIER_TEST_DELAY", delay)
    k = kurier_factory(**kw)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    set_debug(k)
    k.start()
    wait_sessions(k, 0)
    return k


def message_until(r, stop):
    """Walk a transaction up to stop ("MAIL", "RCPT", "DOT"), reading each reply."""
    assert r.reply()[0] == 220
    assert r.cmd("EHLO client.example")[0] == 250
    r.send("MAIL FROM:<a@remote.example>\r\n")
    if stop == "MAIL":
        return
    assert r.reply()[0] == 250
    r.send("RCPT TO:<demo@example.test>\r\n")
    if stop == "RCPT":
        return
    assert r.reply()[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send("Subject: hang up\r\n\r\nbody\r\n.\r\n")


@pytest.mark.parametrize("stage,trace", [("MAIL", "< MAIL FROM"), ("RCPT", "< RCPT TO"),
                                         ("DOT", "end of data, ")])
def test_hang_up_during_a_verdict(kurier_factory, monkeypatch, stage, trace):
    k = mx_with_delays(kurier_factory, monkeypatch, "judge=1500")
    r = Raw(k.port)
    message_until(r, stage)
    k.wait_log(trace)
    r.close()  # the verdict is still held
    wait_sessions(k, 0)
    time.sleep(2)  # past the verdict: it was cancelled with the session
    assert_alive(k)
    # the daemon goes on serving
    code, _ = greeted(k.port)
    assert code == 220
    assert k.stop() == 0


def test_hang_up_during_the_commit_keeps_the_message(kurier_factory, monkeypatch):
    k = mx_with_delays(kurier_factory, monkeypatch, "commit=2000")
    r = Raw(k.port)
    message_until(r, "DOT")
    k.wait_log("end of data accepted, committing")
    r.close()  # before the 250
    wait_sessions(k, 0)
    # the message was on disk: it is queued and delivered all the same
    k.wait_mail("demo@example.test")
    assert re.search(r": client=unknown\[127\.0\.0\.1\]", k.log())
    assert_alive(k)
    assert k.stop() == 0


def starttls_session(port, rcvbuf=None):
    """A plain connection, EHLO, STARTTLS, the handshake: the TLS socket."""
    plain = socket.socket()
    if rcvbuf:
        plain.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    plain.settimeout(10)
    plain.connect(("127.0.0.1", port))
    r = Raw.__new__(Raw)  # Raw's dialogue on a socket configured before connect
    r.s, r.buf = plain, b""
    assert r.reply()[0] == 220
    assert r.cmd("EHLO client.example")[0] == 250
    assert r.cmd("STARTTLS")[0] == 220
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c.wrap_socket(plain, server_hostname="mx.example.test")


def test_hang_up_with_unread_replies_during_the_end_of_data_over_tls(kurier_factory,
                                                                      monkeypatch):
    """The crash of issue 9: a client pipelines inside STARTTLS commands whose replies
    it never reads and hangs up while the end of its message is judged; the commit
    that followed outlived the session and wrote into freed memory."""
    monkeypatch.setenv("KURIER_TEST_DELAY", "judge=1000,commit=4000")
    k = kurier_factory()
    cert = os.path.join(k.dir, "cert.pem")
    key = os.path.join(k.dir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=mx.example.test"], check=True,
                   capture_output=True)
    os.chmod(key, 0o644)
    with open(k.conf) as f:
        text = f.read()
    with open(k.conf, "w") as f:
        f.write(text.replace("    role mx;\n", "    role mx;\n    tls starttls;\n"
                             "    cert %s;\n    key %s;\n" % (cert, key)))
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    set_debug(k)
    k.start()
    s = starttls_session(k.port, rcvbuf=16384)  # little room for the replies
    burst = (b"EHLO client.example\r\n" + HELP * 60000 +
             b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n"
             b"Subject: unread\r\n\r\nbody\r\n.\r\n")
    try:
        s.sendall(burst)
    except socket.timeout:
        pass  # the daemon stopped reading a client that does not read its replies
    # hang up once the end of data is judged, or when it is clear the daemon is not
    # reading this client any more (then its commands wait for replies to be read)
    deadline = time.time() + 15
    while "end of data, " not in k.log() and time.time() < deadline:
        time.sleep(0.05)
    s.close()
    wait_sessions(k, 0)
    time.sleep(6)  # past the verdict and the commit
    assert_alive(k)
    assert greeted(k.port)[0] == 220
    assert k.stop() == 0


def test_hang_up_during_the_auth_check(kurier_factory):
    k = kurier_factory(listen_extra="    auth on;\n    auth_plaintext on;\n")
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    set_debug(k)
    k.start()
    wait_sessions(k, 0)
    r = Raw(k.port)
    assert r.reply()[0] == 220
    assert r.cmd("EHLO client.example")[0] == 250
    # a wrong password: the answer waits for the brute-force delay (1 s)
    r.send("AUTH PLAIN %s\r\n" % b64("\0demo@example.test\0wrong"))
    k.wait_log("< AUTH PLAIN")
    r.close()
    wait_sessions(k, 0)
    time.sleep(2)  # past the delay: the check was cancelled with the session
    assert_alive(k)
    assert k.stop() == 0


def test_hang_up_during_the_client_name_lookup(kurier_factory):
    """reverse_dns on, and a resolver that never answers: the session waits for the
    client's name before the greeting; the client leaves first."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.settimeout(20)
    try:
        k = kurier_factory(extra="resolver 127.0.0.1@%d;\n" % silent.getsockname()[1], reverse_dns=True)
        k.add_domain("example.test")
        k.start()
        wait_sessions(k, 0)
        # drop what the start-up probe asked
        silent.settimeout(0.2)
        try:
            while True:
                silent.recvfrom(4096)
        except socket.timeout:
            pass
        silent.settimeout(20)
        c = socket.create_connection(("127.0.0.1", k.port), timeout=10)
        silent.recvfrom(4096)  # the PTR query: the lookup is under way
        c.close()
        wait_sessions(k, 0)
        assert_alive(k)
        assert k.stop() == 0
    finally:
        silent.close()


def test_shutdown_during_the_end_of_data_answers_the_message(kurier_factory, monkeypatch):
    """SIGTERM while the end of a message is judged: the client gets the message's
    answer (250) before the 421, never a 421 for a message that is queued after all
    (its retry would deliver it twice)."""
    k = mx_with_delays(kurier_factory, monkeypatch, "judge=1500",
                       limits={"shutdown_grace": "0s"})
    r = Raw(k.port, timeout=30)
    message_until(r, "DOT")
    k.wait_log("end of data, ")
    k.proc.send_signal(signal.SIGTERM)
    code, text = r.reply()
    assert code == 250 and "queued as" in text, text
    code, text = r.reply()
    assert code == 421 and "4.3.2" in text, text
    r.close()
    assert k.stop(timeout=60) == 0
    k.start()  # delivered once, after the restart
    k.wait_mail("demo@example.test")
    time.sleep(1)
    assert len(k.maildir_new("demo@example.test")) == 1
    assert k.stop() == 0


# --- item 4: no credentials in any trace ----------------------------------------------------


def test_debug_log_has_no_credentials(kurier_factory):
    password = "Pw-9f3kQz!x"
    k = kurier_factory(listen_extra="    auth on;\n    auth_plaintext on;\n")
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", password)
    set_debug(k, "all")
    k.start()
    user = "demo@example.test"
    plain = b64("\0%s\0%s" % (user, password))
    wrong_plain = b64("\0%s\0%s" % (user, password + "-wrong"))
    # PLAIN with an initial response, right and wrong
    r = Raw(k.port)
    assert r.reply()[0] == 220
    assert r.cmd("EHLO client.example")[0] == 250
    assert r.cmd("AUTH PLAIN " + wrong_plain)[0] == 535
    assert r.cmd("AUTH PLAIN " + plain)[0] == 235
    r.cmd("QUIT")
    r.close()
    # LOGIN, with the user name as initial response and with challenges
    r = Raw(k.port)
    assert r.reply()[0] == 220
    assert r.cmd("EHLO client.example")[0] == 250
    assert r.cmd("AUTH LOGIN " + b64(user))[0] == 334
    assert r.cmd(b64(password + "-wrong"))[0] == 535
    assert r.cmd("AUTH LOGIN")[0] == 334
    assert r.cmd(b64(user))[0] == 334
    assert r.cmd(b64(password))[0] == 235
    r.cmd("QUIT")
    r.close()
    # PLAIN in the challenge form
    r = Raw(k.port)
    assert r.reply()[0] == 220
    assert r.cmd("EHLO client.example")[0] == 250
    assert r.cmd("AUTH PLAIN")[0] == 334
    assert r.cmd(plain)[0] == 235
    r.cmd("QUIT")
    r.close()
    wait_sessions(k, 0)
    log = k.log()
    for secret in (password, plain, wrong_plain, b64(password), b64(password + "-wrong"),
                   b64(user)):
        assert secret not in log, secret
    # nor any prefix of the base64 that would give most of it away
    for blob in (plain, wrong_plain):
        assert blob[:16] not in log
    assert "< AUTH PLAIN (initial response not logged)" in log  # the trace is there
    assert k.stop() == 0
