#!/usr/bin/python3
"""Policy delegation (docs/inbound.md, issue 11 item 9): kurierd asks a policy server
in Postfix's protocol (check_policy_service) as one more check of the pipeline.
Against Debian's real postgrey (TCP and unix socket): the first attempt is greylisted
(450), a retry after postgrey's delay is accepted and delivered. A small policy server
in this file answers what postgrey never does: REJECT with a text, numeric codes,
unknown actions, oversized replies, no reply at all; it also counts connections, so
a reused connection and a reconnect after the server closed one are seen. A server
that is down gets policy_default_action; a client hanging up during a request
cancels it (the server sees the connection go)."""

import socket
import socketserver
import threading
import time

import pytest

import peers
from conftest import SAFETY, Raw, free_port

MSG = b"Subject: policy test\r\n\r\nasked the policy server\r\n"
GREY_DELAY = 3  # postgrey --delay: retries before it are greylisted again


def make(kurier_factory, service, extra=""):
    k = kurier_factory(listen_extra="    checks policy;\n    policy_service %s;\n%s" %
                       (service, extra))
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    return k


def attempt(k, sender, rcpt="demo@example.test", data=True):
    """One delivery attempt: (code, text) of RCPT; the message is sent when accepted."""
    import smtplib
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        s.ehlo("client.test")
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        code, text = s.rcpt(rcpt)
        if code == 250 and data:
            dcode, dtext = s.data(MSG)
            assert dcode == 250, (dcode, dtext)
        return code, text.decode()


def assert_alive(k):
    assert k.proc.poll() is None, "kurierd died:\n" + k.log()[-4000:]
    assert "ERROR: AddressSanitizer" not in k.log()
    assert "runtime error:" not in k.log()


# --- postgrey ----------------------------------------------------------------------

def greylist_then_deliver(k, sender):
    first = time.time()
    code, text = attempt(k, sender)
    assert code == 450, text
    assert "Recipient address rejected: Greylisted" in text, text
    # an early retry is greylisted again (only checked while surely early)
    code, text = attempt(k, sender)
    if time.time() - first < GREY_DELAY - 0.5:
        assert code == 450, text
    deadline = time.time() + SAFETY
    while code != 250:
        assert time.time() < deadline, k.log()[-3000:]
        time.sleep(0.5)
        code, text = attempt(k, sender)
    k.wait_mail("demo@example.test")
    assert "policy_default_action" not in k.log(), k.log()[-3000:]  # no failure


def test_postgrey_tcp_greylists_then_delivers(kurier_factory):
    with peers.postgrey(GREY_DELAY) as (service, d):
        k = make(kurier_factory, service)
        greylist_then_deliver(k, "alice@sender.test")
        assert k.stop() == 0  # with a kept connection: closed at exit, nothing leaks
        assert "Sanitizer" not in k.log() and "runtime error:" not in k.log()
        # postgrey logged our triplet: the attributes it needs were sent
        with open(d + "/postgrey.log") as f:
            log = f.read()
        assert "action=greylist" in log and "sender=alice@sender.test" in log, log
        assert "recipient=demo@example.test" in log and "client_address=127.0.0.1" in log, log
        assert "action=pass" in log, log


def test_postgrey_unix_socket(kurier_factory):
    with peers.postgrey(GREY_DELAY, unix=True) as (service, d):
        k = make(kurier_factory, service)
        greylist_then_deliver(k, "bob@sender.test")
        assert_alive(k)


# --- a scripted policy server ------------------------------------------------------

class PolicyServer:
    """A policy server on a free loopback port; the action for a request is chosen by
    the sender's local part (ACTIONS). Records requests and counts connections."""

    ACTIONS = {
        "ok": "OK",
        "dunno": "DUNNO",
        "reject": "REJECT 5.7.0 go away, you",
        "rejectbare": "reject",
        "defer": "DEFER not now",
        "greylist": "DEFER_IF_PERMIT come back later",
        "code5": "550 5.1.1 no such user here",
        "code4": "421 4.7.0 busy",
        "numeric": "200",
        "warn": "WARN looks odd",
        "prepend": "PREPEND X-Policy: seen",
        "hold": "HOLD look at this",
        "unknown": "FROBNICATE now",
    }

    def __init__(self, close_after_reply=False, drop_second=False):
        self.requests = []
        self.connections = 0
        self.closed = 0  # connections the client (kurierd) closed
        self.close_after_reply = close_after_reply
        self.drop_second = drop_second
        self.gate = threading.Event()  # "gated" senders wait for it
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                owner.connections += 1
                served = 0
                while True:
                    attrs = {}
                    while True:
                        try:
                            line = self.rfile.readline()
                        except ConnectionResetError:
                            line = b""
                        if not line:
                            owner.closed += 1
                            return
                        line = line.rstrip(b"\n").decode()
                        if not line:
                            break
                        name, _, value = line.partition("=")
                        attrs[name] = value
                    owner.requests.append(attrs)
                    served += 1
                    if owner.drop_second and served == 2:
                        return  # closes a kept connection as a request comes in
                    local = attrs.get("sender", "").split("@")[0]
                    if local == "hang":
                        continue  # never answers; the next read sees the close
                    if local == "gated":
                        owner.gate.wait(SAFETY)
                        local = "ok"
                    if local == "big":
                        self.wfile.write(b"action=REJECT " + b"x" * 10000 + b"\n\n")
                    elif local == "junk":
                        self.wfile.write(b"no equals sign here\n\n")
                    else:
                        action = owner.ACTIONS.get(local, "DUNNO")
                        self.wfile.write(b"foo=bar\naction=" + action.encode() + b"\n\n")
                    self.wfile.flush()
                    if owner.close_after_reply:
                        return

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def wait(self, cond, what):
        deadline = time.time() + SAFETY
        while not cond():
            assert time.time() < deadline, what
            time.sleep(0.05)


def test_actions_become_replies(kurier_factory):
    with PolicyServer() as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port)
        cases = [
            ("reject", 554, "5.7.0 <demo@example.test>: Recipient address rejected: go away, you"),
            ("rejectbare", 554, "5.7.1 <demo@example.test>: Recipient address rejected: "
                                "Access denied"),
            ("defer", 450, "4.7.1 <demo@example.test>: Recipient address rejected: not now"),
            ("greylist", 450, "4.7.1 <demo@example.test>: Recipient address rejected: come "
                              "back later"),
            ("code5", 550, "5.1.1 <demo@example.test>: Recipient address rejected: no such "
                           "user here"),
            ("code4", 421, "4.7.0 <demo@example.test>: Recipient address rejected: busy"),
        ]
        for local, want_code, want_text in cases:
            code, text = attempt(k, local + "@sender.test")
            assert (code, text) == (want_code, want_text), (local, code, text)
        # accepted: OK, DUNNO, an all-numerical result, WARN and PREPEND (logged)
        for n, local in enumerate(["ok", "dunno", "numeric", "warn", "prepend"], 1):
            code, text = attempt(k, local + "@sender.test")
            assert code == 250, (local, code, text)
            k.wait_mail("demo@example.test", n)
        k.wait_log(": WARN looks odd")
        # one connection carried every request (reused, as Postfix does)
        assert ps.connections == 1, ps.connections
        # what postfix sends
        r = ps.requests[0]
        for name, value in [("request", "smtpd_access_policy"), ("protocol_state", "RCPT"),
                            ("protocol_name", "ESMTP"), ("helo_name", "client.test"),
                            ("sender", "reject@sender.test"), ("recipient", "demo@example.test"),
                            ("recipient_count", "0"), ("client_address", "127.0.0.1"),
                            ("client_name", "unknown"), ("sasl_username", ""),
                            ("size", "0"), ("queue_id", "")]:
            assert r.get(name) == value, (name, r)
        for name in ("instance", "reverse_client_name", "client_port", "server_port"):
            assert name in r, (name, r)
        assert_alive(k)


def test_unknown_unsupported_and_oversized_replies_get_default_action(kurier_factory):
    with PolicyServer() as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port)
        for local, logged in [("unknown", 'unknown action "FROBNICATE now"'),
                              ("hold", 'unsupported action "HOLD look at this"'),
                              ("big", "reply longer than 4096 bytes"),
                              ("junk", "malformed reply (no action, or a line without '=')")]:
            code, text = attempt(k, local + "@sender.test")
            assert (code, text) == (451, "4.3.5 Server configuration problem"), (local, text)
            k.wait_log(logged + "; policy_default_action defer")
        # the connection after a bad reply is not reused, the server is asked again
        assert attempt(k, "ok@sender.test")[0] == 250
        assert_alive(k)
    with PolicyServer() as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port,
                 "    policy_default_action dunno;\n")
        assert attempt(k, "unknown@sender.test")[0] == 250
        assert attempt(k, "big@sender.test")[0] == 250
        k.wait_mail("demo@example.test", 2)
        k.wait_log("reply longer than 4096 bytes; policy_default_action dunno")
        assert_alive(k)


def test_server_down_gets_default_action(kurier_factory):
    port = free_port()  # nothing listens there
    k = make(kurier_factory, "127.0.0.1:%d" % port)
    code, text = attempt(k, "a@sender.test")
    assert (code, text) == (451, "4.3.5 Server configuration problem"), text
    k.wait_log("policy service 127.0.0.1:%d: " % port)
    k.wait_log("Connection refused; policy_default_action defer")
    assert_alive(k)
    k2 = make(kurier_factory, "unix:%s/missing.sock" % k.dir,
              "    policy_default_action dunno;\n")
    assert attempt(k2, "a@sender.test")[0] == 250
    k2.wait_mail("demo@example.test")
    k2.wait_log("cannot connect: No such file or directory; policy_default_action dunno")
    assert_alive(k2)


@pytest.mark.parametrize("mode", ["close_after_reply", "drop_second"])
def test_reconnects_when_server_closes_connection(kurier_factory, mode):
    """A server that closes its connection after each reply (as postgrey --exim), or
    closes a kept connection as the next request comes in: every request still gets
    its answer, on a new connection."""
    with PolicyServer(**{mode: True}) as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port)
        for n in range(1, 4):
            assert attempt(k, "ok@sender.test")[0] == 250
            k.wait_mail("demo@example.test", n)
        assert ps.connections == 3, ps.connections
        assert "policy_default_action" not in k.log()
        assert_alive(k)


def test_requests_wait_for_a_connection_beyond_16(kurier_factory):
    """At most 16 connections to one server: further requests wait for one, and every
    request is answered."""
    with PolicyServer() as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port)
        sessions = []
        for _ in range(20):
            r = Raw(k.port)
            assert r.reply()[0] == 220
            assert r.cmd("EHLO client.test")[0] == 250
            assert r.cmd("MAIL FROM:<gated@sender.test>")[0] == 250
            r.send("RCPT TO:<demo@example.test>\r\n")
            sessions.append(r)
        ps.wait(lambda: len(ps.requests) == 16, "16 requests never came")
        time.sleep(0.5)  # room for a 17th connection that must not come
        assert ps.connections == 16 and len(ps.requests) == 16, ps.connections
        ps.gate.set()
        for r in sessions:
            assert r.reply()[0] == 250
            r.close()
        assert len(ps.requests) == 20 and ps.connections == 16
        assert_alive(k)


def test_timeout_gets_default_action(kurier_factory):
    with PolicyServer() as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port, "    policy_timeout 1s;\n")
        code, text = attempt(k, "hang@sender.test")
        assert (code, text) == (451, "4.3.5 Server configuration problem"), text
        k.wait_log("no reply within 1s; policy_default_action defer")
        # the connection with the unanswered request was closed, the next is new
        ps.wait(lambda: ps.closed == 1, "kurierd kept the timed-out connection")
        assert attempt(k, "ok@sender.test")[0] == 250
        assert ps.connections == 2
        assert_alive(k)


def test_hangup_during_policy_request_cancels_it(kurier_factory):
    with PolicyServer() as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port, "    policy_timeout 10m;\n")
        r = Raw(k.port)
        assert r.reply()[0] == 220
        assert r.cmd("EHLO client.test")[0] == 250
        assert r.cmd("MAIL FROM:<hang@sender.test>")[0] == 250
        r.send("RCPT TO:<demo@example.test>\r\n")
        ps.wait(lambda: len(ps.requests) == 1, "the policy server was never asked")
        r.close()  # hang up while the request is pending
        # the request was cancelled: its connection closed (a late reply has no reader)
        ps.wait(lambda: ps.closed == 1, "kurierd kept the request after the hang-up")
        k.wait_log("disconnect from")
        assert attempt(k, "ok@sender.test")[0] == 250
        k.wait_mail("demo@example.test")
        assert_alive(k)
        assert k.stop() == 0
        assert "Sanitizer" not in k.log() and "runtime error:" not in k.log()


def test_policy_stage_mail_and_eom(kurier_factory):
    with PolicyServer() as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port, "    policy_stage mail;\n")
        import smtplib
        with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
            s.ehlo("client.test")
            code, text = s.mail("reject@sender.test")
            assert (code, text.decode()) == (
                554, "5.7.0 <reject@sender.test>: Sender address rejected: go away, you")
        r = ps.requests[-1]
        assert (r["protocol_state"], r["recipient"]) == ("MAIL", ""), r
        assert_alive(k)
    with PolicyServer() as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port, "    policy_stage eom;\n")
        import smtplib
        with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
            s.ehlo("client.test")
            assert s.mail("reject@sender.test")[0] == 250
            assert s.rcpt("demo@example.test")[0] == 250
            code, text = s.data(MSG)
            assert code == 554 and b"go away, you" in text, (code, text)
        r = ps.requests[-1]
        assert r["protocol_state"] == "END-OF-MESSAGE", r
        assert r["recipient"] == "demo@example.test" and r["recipient_count"] == "1", r
        assert int(r["size"]) > len(MSG), r
        assert_alive(k)


def test_config_errors(kurier_factory):
    k = kurier_factory(listen_extra="    policy_service 127.0.0.1:10023;\n")
    r = k.cli("config", "check", check=False)
    assert r.returncode != 0
    assert 'policy_service needs "policy" in checks' in r.stderr.decode(), r.stderr
    k = kurier_factory(listen_extra="    checks policy;\n    policy_service example.org:1;\n")
    r = k.cli("config", "check", check=False)
    assert r.returncode != 0
    assert 'invalid policy_service "example.org:1"' in r.stderr.decode(), r.stderr


def test_check_client_asks_the_policy_server(kurier_factory):
    with PolicyServer() as ps:
        k = make(kurier_factory, "127.0.0.1:%d" % ps.port)
        r = k.cli("check-client", "127.0.0.1", "--helo", "client.test", "--from",
                  "reject@sender.test", "--to", "demo@example.test", check=False)
        out = r.stdout.decode()
        assert "policy" in out and "go away, you" in out and "refused" in out, out
        assert ps.requests[-1]["protocol_state"] == "RCPT", ps.requests
        r = k.cli("check-client", "127.0.0.1", "--from", "ok@sender.test", "--to",
                  "demo@example.test", check=False)
        assert "accepted" in r.stdout.decode(), r.stdout
