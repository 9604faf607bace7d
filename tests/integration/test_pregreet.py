#!/usr/bin/python3
"""Pre-greeting tests on port 25 (docs/inbound.md), postscreen-like, on the real
daemon: a client that talks before the greeting (listen { pregreet_wait }) is an early
talker, scored by the pregreet check or refused (pregreet_action); commands pipelined
before EHLO offered PIPELINING are scored; a client address without PTR, or whose PTR
does not resolve back, is scored by the rdns check (kurier check-client shows it).
Submission listeners never pause. A client that hangs up during the pause or the name
lookup leaves nothing behind (ASan build)."""

import smtplib
import socket
import time

import peers
from conftest import SAFETY, KURIER, Raw, free_port

MSG = b"Subject: pregreet\r\n\r\npatient clients pass\r\n"

ZONES = """
    local-zone: "test." nodefault
    local-zone: "clients.test." static
    local-data: "good.clients.test. 60 IN A 127.0.0.7"
    local-data: "liar.clients.test. 60 IN A 127.0.0.99"
    local-zone: "0.0.127.in-addr.arpa." static
    local-data-ptr: "127.0.0.7 good.clients.test"
    local-data-ptr: "127.0.0.8 liar.clients.test"
    local-zone: "." static
"""

# Long enough that a client which sends right after connect() is surely early on a
# loaded machine; only the sessions that wait for the banner pay it.
WAIT = "3s"


def make(kurier_factory, listen_extra, **kw):
    k = kurier_factory(listen_extra=listen_extra, **kw)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    return k


def early(port, data, src="127.0.0.1"):
    """Connect and send data at once, before the greeting can come."""
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(SAFETY)
    s.connect(("127.0.0.1", port))
    s.sendall(data)
    r = Raw.__new__(Raw)
    r.s, r.buf = s, b""
    return r


def patient_send(k, port=None):
    """A well-behaved client (smtplib waits for every reply)."""
    with smtplib.SMTP("127.0.0.1", port or k.port, timeout=SAFETY) as s:
        s.sendmail("alice@remote.test", ["demo@example.test"], MSG)


def test_early_talker_scored_patient_client_passes(kurier_factory):
    k = make(kurier_factory, "    pregreet_wait %s;\n    checks pregreet;\n"
             "    early_talker_score 10;\n" % WAIT)
    r = early(k.port, b"EHLO early.test\r\n")
    code, text = r.reply()
    assert code == 220, text  # pregreet_action score: greeted, judged later
    code, text = r.reply()
    assert code == 250 and "PIPELINING" in text, text
    assert r.cmd("MAIL FROM:<bot@remote.test>")[0] == 250
    code, text = r.cmd("RCPT TO:<demo@example.test>")
    assert code == 554 and text == ("554 5.7.1 Service unavailable; client [127.0.0.1] sent "
                                    "commands before the greeting"), text
    r.close()
    k.wait_log('early talker unknown[127.0.0.1]: 17 bytes before the greeting: '
               '"EHLO early.test"')
    assert "pregreet=+10 (talked before the greeting)" in k.log()
    # the same listener takes mail from a client that waits for the banner
    patient_send(k)
    k.wait_mail("demo@example.test")
    assert k.log().count("early talker") == 1


def test_early_talker_reject_and_drop(kurier_factory):
    k = make(kurier_factory, "    pregreet_wait %s;\n    pregreet_action reject;\n" % WAIT)
    r = early(k.port, b"EHLO early.test\r\nMAIL FROM:<a@remote.test>\r\n")
    code, text = r.reply()
    assert code == 554 and text.startswith("554 5.5.0 mx.example.test Error: you sent "
                                           "commands before the greeting"), text
    # RFC 5321 3.1: 503 to everything until QUIT
    assert r.reply()[0] == 503
    assert r.reply()[0] == 503
    assert r.cmd("QUIT")[0] == 221
    r.close()
    k.wait_log("NOQUEUE: reject: CONNECT from unknown[127.0.0.1]: 554 5.5.0 Protocol error: "
               "commands sent before the greeting;")
    patient_send(k)
    k.wait_mail("demo@example.test")

    k2 = make(kurier_factory, "    pregreet_wait %s;\n    pregreet_action drop;\n" % WAIT)
    r = early(k2.port, b"EHLO early.test\r\n")
    code, text = r.reply()
    assert code == 554 and "5.5.0" in text, text
    assert r.closed(), "the early talker was not dropped"
    r.close()
    patient_send(k2)
    k2.wait_mail("demo@example.test")


def test_pipelining_without_ehlo_scored(kurier_factory):
    k = make(kurier_factory, "    checks pregreet;\n    pipelining_score 10;\n")
    # EHLO offered PIPELINING: a pipelined group is fine
    r = Raw(k.port)
    assert r.reply()[0] == 220
    assert r.cmd("EHLO good.test")[0] == 250
    r.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n")
    assert [r.reply()[0] for _ in range(3)] == [250, 250, 354]
    r.send("Subject: ok\r\n\r\npipelined after EHLO\r\n.\r\n")
    assert r.reply()[0] == 250
    assert r.cmd("QUIT")[0] == 221
    r.close()
    k.wait_mail("demo@example.test")
    # HELO does not offer it: several commands in one packet
    r = Raw(k.port)
    assert r.reply()[0] == 220
    r.send("HELO bot.test\r\nMAIL FROM:<bot@remote.test>\r\nRCPT TO:<demo@example.test>\r\n")
    assert r.reply()[0] == 250
    assert r.reply()[0] == 250
    code, text = r.reply()
    assert code == 554 and text == ("554 5.7.1 Service unavailable; client [127.0.0.1] "
                                    "pipelined commands without PIPELINING"), text
    r.close()
    k.wait_log('improper pipelining from unknown[127.0.0.1]: ')
    assert '"HELO bot.test" before its reply' in k.log()
    assert "pregreet=+10 (pipelining before EHLO offered it)" in k.log()
    # a HELO client that waits for each reply is not scored
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        s.helo("slow.test")
        assert s.mail("a@remote.test")[0] == 250
        assert s.rcpt("demo@example.test")[0] == 250
    assert k.log().count("improper pipelining") == 1


def test_submission_listener_never_pauses(kurier_factory, tmp_path):
    sub = free_port()
    k = kurier_factory(
        listen_extra="    pregreet_wait %s;\n    pregreet_action drop;\n" % WAIT,
        extra="listen 127.0.0.1:%d {\n    role submission;\n    auth_plaintext on;\n}\n" % sub)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    # an early talker on submission is neither paused for nor judged
    r = early(sub, b"EHLO early.test\r\n")
    code, text = r.reply()
    assert code == 220, text
    code, text = r.reply()
    assert code == 250 and "AUTH PLAIN LOGIN" in text, text
    assert r.cmd("QUIT")[0] == 221
    r.close()
    k.wait_log("disconnect from unknown[127.0.0.1] ehlo=1 quit=1")
    assert "early talker" not in k.log()
    # the same early talker on the mx listener is dropped
    r = early(k.port, b"EHLO early.test\r\n")
    assert r.reply()[0] == 554
    r.close()
    k.wait_log("early talker unknown[127.0.0.1]")
    # and a pause on a submission listener is a config error
    bad = tmp_path / "bad.conf"
    bad.write_text("listen 127.0.0.1:2587 {\n    role submission;\n    pregreet_wait 2s;\n}\n")
    r = k.cli("-c", str(bad), "config", "check", check=False, prog=KURIER)
    assert r.returncode != 0
    assert b"pregreet_wait is for role mx listeners" in r.stdout + r.stderr, r


def test_reverse_dns_scored(kurier_factory):
    with peers.unbound(ZONES, "clients.test") as resolver:
        k = make(kurier_factory, "    checks rdns;\n    rdns_missing_score 3;\n"
                 "    rdns_mismatch_score 2;\n", extra="resolver %s;\n" % resolver,
                 reverse_dns=True)
        out = k.cli("check-client", "127.0.0.9", "--to", "demo@example.test").stdout.decode()
        assert "reverse DNS: none (no PTR record)" in out, out
        assert "rdns         score +3 (no PTR for 127.0.0.9)" in out, out
        assert out.rstrip().endswith("accepted"), out  # 3 < reject_score 10
        out = k.cli("check-client", "127.0.0.8", "--to", "demo@example.test").stdout.decode()
        assert "reverse DNS: liar.clients.test (does not resolve back)" in out, out
        assert ("rdns         score +2 (PTR liar.clients.test does not resolve to 127.0.0.8)"
                in out), out
        out = k.cli("check-client", "127.0.0.7", "--to", "demo@example.test").stdout.decode()
        assert "reverse DNS: good.clients.test (confirmed)" in out, out
        assert "rdns         pass" in out, out
        # a real session from an address without PTR: the score is in the policy log
        with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY,
                          source_address=("127.0.0.9", 0)) as s:
            s.sendmail("alice@remote.test", ["demo@example.test"], MSG)
        k.wait_mail("demo@example.test")
        k.wait_log("RCPT from unknown[127.0.0.9]: to=<demo@example.test> rdns=+3 "
                   "(no PTR for 127.0.0.9); score=3")
        # enough weight refuses
        k2 = make(kurier_factory, "    checks rdns;\n    rdns_missing_score 10;\n",
                  extra="resolver %s;\n" % resolver, reverse_dns=True)
        with smtplib.SMTP("127.0.0.1", k2.port, timeout=SAFETY,
                          source_address=("127.0.0.9", 0)) as s:
            s.ehlo("c.test")
            s.mail("alice@remote.test")
            code, text = s.rcpt("demo@example.test")
        assert code == 554 and text == (b"5.7.1 Service unavailable; client [127.0.0.9] has no "
                                        b"reverse DNS (PTR) record"), text


def test_hangup_during_pause_and_lookup(kurier_factory):
    """Clients hang up while the greeting pause runs, and while their name lookup is
    pending (the resolver holds the PTR query until after the hang-up, then answers):
    the timer and the query went with the session, so nothing fires on freed memory
    (ASan build), and the daemon goes on and stops cleanly."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    hole.settimeout(SAFETY)

    def ptr_query(last_octet):
        """The PTR query for 127.0.5.N (retries of older queries are answered too)."""
        label = str(last_octet).encode()
        want = bytes([len(label)]) + label + b"\x015\x010\x03127\x07in-addr"
        while True:
            query, peer = hole.recvfrom(4096)
            if want in query:
                return query, peer
            nxdomain(query, peer)

    def nxdomain(query, peer):
        hole.sendto(query[:2] + b"\x81\x83" + query[4:6] + b"\0\0\0\0\0\0" + query[12:], peer)

    try:
        k = make(kurier_factory, "    pregreet_wait 1s;\n    checks pregreet rdns;\n",
                 extra="resolver 127.0.0.1@%d;\n" % hole.getsockname()[1], reverse_dns=True)
        for i in range(1, 4):  # a new address each time: no answer comes from a cache
            gone = k.log().count("disconnect from")
            r = early(k.port, b"EHLO gone%d.test\r\n" % i, src="127.0.5.%d" % i)
            query, peer = ptr_query(i)  # the PTR query is pending now
            r.close()
            deadline = time.time() + SAFETY
            while k.log().count("disconnect from") == gone:
                assert time.time() < deadline, k.log()[-3000:]
                time.sleep(0.05)
            nxdomain(query, peer)  # the late answer
        # a client after them: its pause started after theirs, so when it is greeted
        # their timers would have fired
        s = socket.socket()
        s.settimeout(SAFETY)
        s.bind(("127.0.5.9", 0))
        s.connect(("127.0.0.1", k.port))
        nxdomain(*ptr_query(9))
        f = s.makefile("rb")
        assert f.readline().startswith(b"220 ")
        s.close()
        assert "early talker" not in k.log()  # the hung-up sessions were never greeted
        assert k.stop() == 0
        assert "ERROR: AddressSanitizer" not in k.log()
        assert "runtime error" not in k.log()
    finally:
        hole.close()


def test_hangup_during_pause_without_lookup(kurier_factory):
    k = make(kurier_factory, "    pregreet_wait 1s;\n")
    for i in range(3):
        r = early(k.port, b"EHLO gone%d.test\r\n" % i)
        r.close()
    # a patient client greeted after its own pause: the others' timers are past
    patient_send(k)
    k.wait_mail("demo@example.test")
    assert k.stop() == 0
    assert "ERROR: AddressSanitizer" not in k.log()
