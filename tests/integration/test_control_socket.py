#!/usr/bin/python3
"""Who may use the control socket (issue 9 item 15): any local user may list the
queue (mailq, as with Postfix), read-only and cut down to what mailq shows; changes
are for root and the kurier user, and a refused user is told so, not that the daemon
is not running. Unprivileged commands run as user nobody."""

import os
import socket
import subprocess
import sys
import time

from conftest import KURIER, for_user
from test_queue_tools import (MAILQ, REASON, REMOTE, dead_port, entry, err, listing,  # noqa: F401
                              out, queued, relay, submit, wait_attempts)


def as_nobody(k, argv, input=None):
    env = dict(os.environ, KURIER_CONF=k.conf)
    argv = [for_user(argv[0])] + list(argv[1:])
    return subprocess.run(["runuser", "-u", "nobody", "--"] + argv, input=input,
                          capture_output=True, timeout=30, env=env)


RAW = """import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode())
s.shutdown(socket.SHUT_WR)
b = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    b += c
sys.stdout.write(b.decode())
"""


def raw_request(k, request, user="nobody"):
    """Send request on the control socket as user, half-close, return the answer."""
    sock = os.path.join(k.dir, "var", "control.sock")
    r = subprocess.run([sys.executable, "-c", RAW, sock, request], user=user,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def test_mailq_for_every_user_read_only(relay):
    k = relay
    qid = submit(k, "listed for all", sender="alice@example.test")
    wait_attempts(k, qid, 1)
    mine = subprocess.run([MAILQ], capture_output=True, timeout=30,
                          env=dict(os.environ, KURIER_CONF=k.conf))
    assert mine.returncode == 0, mine.stderr
    r = as_nobody(k, [MAILQ])
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert qid in out and "alice@example.test" in out and REMOTE in out, out
    assert REASON in out and "1 Request" in out, out
    assert out == mine.stdout.decode()  # the same listing root gets
    r = as_nobody(k, [KURIER, "queue", "list"])
    assert r.returncode == 0 and qid in r.stdout.decode(), r.stderr
    # what the daemon tells anyone: no client address, login or original addresses
    raw = raw_request(k, "list\n")
    assert raw.startswith("ok\n") and raw.endswith("\n.\n") and qid in raw, raw
    for leak in ("client:", "helo:", "proto:", "orig=", "relay="):
        assert leak not in raw, (leak, raw)


def test_changes_are_refused_with_the_right_error(relay):
    k = relay
    qid = submit(k, "not yours")
    for args in (["queue", "flush"], ["queue", "delete", qid], ["queue", "hold", qid],
                 ["queue", "delete", "ALL"]):
        r = as_nobody(k, [KURIER] + args)
        err = r.stderr.decode()
        assert r.returncode == 1, (args, r.returncode, err)
        assert "permission denied" in err and "not running" not in err, (args, err)
    assert "queue flushed by admin" not in k.log()
    assert qid in k.cli("queue", "list").stdout.decode()
    # root still may
    assert "flushed" in k.cli("queue", "flush").stdout.decode()


def test_mailq_for_users_while_the_daemon_is_down(relay):
    k = relay
    qid = submit(k, "queued")
    k.stop()
    r = as_nobody(k, [MAILQ])
    err = r.stderr.decode()
    assert r.returncode == 1, (r.stdout, err)
    assert "Permission denied" in err and "kurierd is not running" in err, err
    r = as_nobody(k, [KURIER, "queue", "delete", qid])
    err = r.stderr.decode()
    assert r.returncode == 1 and "permission denied" in err, err
    assert "no such message" not in err, err
    # root reads the spool itself
    assert "1 Request" in k.cli("queue", "list").stdout.decode()


def test_request_without_newline_then_half_close(relay):
    """printf 'ping' | socat - UNIX-CONNECT:...: the request ends with the stream (the
    daemon used to append the newline to a frozen buffer and close without a word)."""
    k = relay
    assert raw_request(k, "ping") == "ok pong\n"
    assert raw_request(k, "list") == "ok\n.\n"
    assert raw_request(k, "flush").startswith("error permission denied: ")
    assert raw_request(k, "flush", user="root") == "ok flushed\n"


HOLD = """import socket, sys
conns = []
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    conns.append(s)
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(b"ping\\n")
except OSError:
    pass  # refused at accept: the daemon may have said "busy" and closed already
print(s.recv(100).decode().strip())
sys.stdout.flush()
sys.stdin.read()  # hold them until told
"""


def test_ordinary_users_cannot_crowd_out_the_admin(relay):
    k = relay
    sock = os.path.join(k.dir, "var", "control.sock")
    p = subprocess.Popen([sys.executable, "-c", HOLD, sock, "16"], user="nobody",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().decode().strip() == "error busy, try again"
        assert "flushed" in k.cli("queue", "flush").stdout.decode()
        assert raw_request(k, "ping", user="root") == "ok pong\n"
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    # the idle ones were closed: ordinary users are served again (once the daemon
    # has seen those closes)
    deadline = time.time() + 30
    while raw_request(k, "ping") != "ok pong\n":
        assert time.time() < deadline, "still busy after the idle connections closed"
        time.sleep(0.1)


def test_release_reads_the_envelope_off_the_loop_and_survives_a_hangup(relay, monkeypatch):
    """`release ID` may need the envelope (is it held?): read on a worker, not on the
    event loop, so a slow disk (the test hook KURIER_TEST_DELAY "control=MS") stalls
    nobody; the client may hang up before the answer, or the daemon stop meanwhile."""
    k = relay
    qid = queued(k, "released after a hangup")
    other = queued(k, "released at the stop")
    for q in (qid, other):
        k.cli("queue", "hold", q)
        k.wait_log("%s: held by admin" % q)
    assert k.stop() == 0
    monkeypatch.setenv("KURIER_TEST_DELAY", "control=8000")
    k.start()
    sock = os.path.join(k.dir, "var", "control.sock")
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(("release %s\n" % qid).encode())
    s.close()  # gone before the answer
    # the loop is free while the worker reads: others are answered meanwhile
    assert raw_request(k, "ping") == "ok pong\n"
    assert "%s: released by admin" % qid not in k.log()
    k.wait_log("%s: released by admin" % qid)
    assert "held" not in entry(listing(k), qid).lower()
    # a second release is refused: the scheduler knows better than the envelope read
    r = k.cli("queue", "release", qid, check=False)
    assert r.returncode != 0 and "not held" in err(r) + out(r), (out(r), err(r))
    # the daemon stops while a release waits on the worker: cancelled cleanly
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(("release %s\n" % other).encode())
    assert raw_request(k, "ping") == "ok pong\n"  # the loop has read the release by now
    assert k.stop() == 0, k.log()[-3000:]
    s.close()
    assert "AddressSanitizer" not in k.log() and "runtime error" not in k.log()
