#!/usr/bin/python3
"""Compromise signals and lock plumbing beyond test_abuse.py (issue 13, docs/abuse.md):
recipients in never-written domains, unusual envelope senders, the share of
user-unknown answers from a real remote server, the owner's notice at another
address, counters that survive a restart, and the directory writes done on a worker.
A real kurierd, smtplib on its submission port; remote mail goes to relay_host, a
port where nothing listens (the mail stays queued) or tests/integration/peers.py's
Downstream server."""

import os
import select
import smtplib
import socket
import threading

from aiosmtpd.controller import Controller

from conftest import SAFETY, free_port
from peers import Downstream
from test_abuse import login, send, status, wait_for

USERS = ("wide", "alias", "legit", "steady", "trapped", "domaintrap", "bouncy", "slow",
         "postmaster", "trapped-owner", "domain-owner")


def make(kurier_factory, abuse, relay_port=None, start=True):
    """kurierd with the abuse block's lines abuse ("{dir}" is its state folder), a
    plaintext-AUTH submission listener and relay_host at relay_port (default: a port
    where nothing listens)."""
    relay_port = relay_port or free_port()
    k = kurier_factory(extra="relay_host 127.0.0.1:%d;\n" % relay_port)
    k.sub_port = free_port()
    with open(k.conf, "a") as f:
        f.write("abuse {\n%s}\nauth {\n    max_failures 20;\n    delay_max 1s;\n}\n"
                % abuse.replace("{dir}", k.dir))
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    auth_plaintext on;\n}\n"
                % k.sub_port)
    k.add_domain("example.test")
    for user in USERS:
        k.add_mailbox("%s@example.test" % user, user + "-pw")
    if start:
        k.start()
    return k


def sendmail_from(s, sender, rcpts):
    msg = "From: %s\r\nTo: %s\r\nSubject: hi\r\n\r\nbody\r\n" % (sender, rcpts[0])
    return s.sendmail(sender, rcpts, msg.encode())


def test_burst_of_new_recipient_domains(kurier_factory):
    """After its first learn_messages messages, recipients in new_domains domains the
    account never wrote to within the hour are a signal; known domains are not."""
    k = make(kurier_factory, "    learn_messages 2;\n    new_domains 4;\n")
    user, legit = "wide@example.test", "legit@example.test"
    with login(k, user) as s:
        send(s, user, ["friend@remote.test"])  # learning
        send(s, user, ["boss@work.test"])      # learning
        send(s, user, ["friend2@remote.test", "boss@work.test"])  # known domains
        send(s, user, ["a@new1.test", "b@new2.test", "c@new3.test"])  # 3 new: not yet
    with login(k, legit) as s:  # the same habits, at its normal rate
        for i in range(6):
            send(s, legit, ["friend%d@remote.test" % i])
    st = status(k, user)
    assert st["evidence"] == [] and st["known_domains"] == 5, st
    with login(k, user) as s:
        send(s, user, ["d@new4.test"])  # the fourth new domain within the hour
    k.wait_log("account=wide@example.test signal=new_domains score=30")
    st = status(k, user)
    assert not st["locked"] and st["score"] == 30, st
    ev = st["evidence"][0]["evidence"]
    assert "recipients in 4 domains never written to" in ev and "new4.test" in ev, ev
    assert status(k, legit)["evidence"] == []
    assert "account=legit@example.test" not in k.log()


def test_unusual_envelope_senders(kurier_factory):
    """Envelope senders the account did not use before (its login and the senders of
    its learning messages are usual): new_senders of them within the hour signal."""
    k = make(kurier_factory, "    learn_messages 2;\n    new_senders 2;\n", start=False)
    # a provider whose customers send with addresses of their own (binding "log"; with
    # "enforce" foreign senders are refused at MAIL anyway)
    k.cli("domain", "binding", "example.test", "log")
    k.start()
    user = "alias@example.test"
    with login(k, user) as s:
        sendmail_from(s, user, ["a@remote.test"])
        sendmail_from(s, "nick@example.test", ["b@remote.test"])  # learns its alias
        sendmail_from(s, "nick@example.test", ["c@remote.test"])  # usual
        sendmail_from(s, user, ["d@remote.test"])                 # usual
        sendmail_from(s, "", ["e@remote.test"])                   # <> is not counted
        sendmail_from(s, "promo@bulk.test", ["f@remote.test"])    # one: not yet
    assert status(k, user)["evidence"] == []
    with login(k, user) as s:
        sendmail_from(s, "offers@cheap.test", ["g@remote.test"])
    k.wait_log("account=alias@example.test signal=unusual_sender score=30")
    ev = status(k, user)["evidence"][0]["evidence"]
    assert "2 envelope senders not used before" in ev and "<offers@cheap.test>" in ev, ev


def test_user_unknown_share_from_the_remote_server(kurier_factory):
    """A real receiver on loopback answers 550 5.1.1 user unknown for most recipients of
    the account's message: once replies_min answers are in, the share is a signal. An
    account whose recipients exist is not touched."""
    port = free_port()
    down = Downstream("127.0.0.1", port, ["real@remote.test", "friend@remote.test"])
    try:
        k = make(kurier_factory, "    replies_min 5;\n", relay_port=port)
        user, legit = "bouncy@example.test", "legit@example.test"
        with login(k, legit) as s:
            send(s, legit, ["friend@remote.test"])
        with login(k, user) as s:
            send(s, user, ["real@remote.test"] + ["gone%d@remote.test" % i for i in range(5)])
        k.wait_log("account=bouncy@example.test signal=user_unknown score=50")
        st = status(k, user)
        assert st["replies"] == 6 and st["user_unknown"] == 5, st
        ev = st["evidence"][0]["evidence"]
        assert "5 of 6 remote answers" in ev and "user-unknown" in ev, ev
        wait_for(lambda: len(down.messages) == 2, "both messages at the receiver", k)
        k.wait_queue_empty()
        assert status(k, legit)["evidence"] == []
        assert status(k, legit)["replies"] == 1
        assert "account=legit@example.test" not in k.log()
    finally:
        down.stop()


class Blocking:
    """aiosmtpd handler: recipients whose local part starts with "blk" get a real
    blocklist reply; the others are accepted."""

    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("blk"):
            return ("554 5.7.1 Service unavailable; client [127.0.0.1] blocked using "
                    "zen.spamhaus.org")
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.accepted.append(list(envelope.rcpt_tos))
        return "250 2.0.0 Ok: queued"


def test_blocklist_share_from_the_remote_server(kurier_factory):
    """A real receiver (aiosmtpd) refuses most recipients of the account's message with
    a blocklist reply: a high share is a signal (not user-unknown)."""
    port = free_port()
    h = Blocking()
    c = Controller(h, hostname="127.0.0.1", port=port, ready_timeout=SAFETY)
    c.start()
    try:
        k = make(kurier_factory, "    replies_min 5;\n", relay_port=port)
        user = "bouncy@example.test"
        with login(k, user) as s:
            send(s, user, ["ok@remote.test"] + ["blk%d@remote.test" % i for i in range(4)])
        k.wait_log("account=bouncy@example.test signal=blocklisted score=50")
        st = status(k, user)
        assert st["replies"] == 5 and st["blocklisted"] == 4 and st["user_unknown"] == 0, st
        assert "4 of 5 remote answers" in st["evidence"][0]["evidence"], st
        assert h.accepted == [["ok@remote.test"]]
    finally:
        c.stop()


def test_lock_notice_to_the_owner(kurier_factory):
    """owners_file names an alternative address per account or per domain: a lock tells
    the owner there, besides the postmaster."""
    k = make(kurier_factory, "    owners_file {dir}/owners;\n    spamtraps traps.test;\n"
             "    mail_to postmaster@example.test;\n", start=False)
    owners = os.path.join(k.dir, "owners")
    with open(owners, "w") as f:
        f.write("# who owns what\n"
                "trapped@example.test  trapped-owner@example.test\n"
                "@example.test         domain-owner@example.test\n"
                "bad line with too many words\n")
    k.start()
    k.wait_log("owners_file %s: 2 owners" % owners)
    assert "%s:4: expected \"NAME ADDRESS\"" % owners in k.log()
    with login(k, "trapped@example.test") as s:
        send(s, "trapped@example.test", ["x@traps.test"])
    k.wait_log("account=trapped@example.test decision=lock")
    notice = open(k.wait_mail("trapped-owner@example.test")[0], "rb").read().decode()
    assert "Subject: Account trapped@example.test locked for sending" in notice
    assert "contact for the account trapped@example.test" in notice and "spamtrap" in notice
    k.wait_mail("postmaster@example.test")
    # an account without its own line: its domain's owner
    with login(k, "domaintrap@example.test") as s:
        send(s, "domaintrap@example.test", ["y@traps.test"])
    notice = open(k.wait_mail("domain-owner@example.test")[0], "rb").read().decode()
    assert "Account domaintrap@example.test locked" in notice
    assert len(k.maildir_new("trapped-owner@example.test")) == 1


def test_counters_survive_a_restart(kurier_factory):
    """Counters, the hour's volume, known domains and scores are in the directory: a
    restart mid-test keeps them, and the soft limit counts on across it."""
    k = make(kurier_factory, "    soft_messages_per_hour 5;\n    hard_messages_per_hour 50;\n"
             "    auth_failures 3;\n")
    user = "steady@example.test"
    for _ in range(2):  # a signal (score 30) to keep too
        s = smtplib.SMTP("127.0.0.1", k.sub_port, timeout=SAFETY)
        s.ehlo("x")
        try:
            s.login(user, "wrong")
        except smtplib.SMTPAuthenticationError:
            pass
        s.close()
    with login(k, user) as s:
        for i in range(3):
            send(s, user, ["r%d@remote.test" % i, "x@other.test"])
    k.wait_log("account=steady@example.test signal=auth_after_failures")
    before = status(k, user)
    assert before["counters"]["messages_per_hour"]["count"] == 3, before
    assert before["messages_this_hour"] == 3 and before["messages_seen"] == 3, before
    assert before["known_domains"] == 2 and before["score"] == 30, before
    k.stop()
    k.start()
    after = status(k, user)
    for key in ("messages_this_hour", "messages_seen", "known_domains", "score", "baseline"):
        assert after[key] == before[key], (key, before, after)
    assert after["counters"] == before["counters"], (before, after)
    codes = []
    with login(k, user) as s:
        for i in range(3):
            try:
                send(s, user, ["again%d@remote.test" % i])
                codes.append(250)
            except smtplib.SMTPSenderRefused as e:
                codes.append(e.smtp_code)
                s.rset()
    assert codes == [250, 250, 451], codes  # 3 before the restart + 2 = the soft limit


def test_directory_writes_leave_the_loop_free(kurier_factory, monkeypatch):
    """The directory writes of a signal and a lock run on a worker: while they wait
    (KURIER_TEST_DELAY "abuse=MS" holds each), the daemon answers other clients and
    the lock already holds; the client that caused them has gone. A stop with writes
    still pending makes them before it exits: after a restart the lock and its
    evidence are there."""
    monkeypatch.setenv("KURIER_TEST_DELAY", "abuse=8000")
    k = make(kurier_factory, "    spamtraps traps.test;\n")
    monkeypatch.delenv("KURIER_TEST_DELAY")
    user = "slow@example.test"
    s = login(k, user)
    send(s, user, ["x@traps.test"])
    s.close()  # hangs up with the writes pending
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as m:  # the loop is free
        assert m.noop()[0] == 250
    sub = smtplib.SMTP("127.0.0.1", k.sub_port, timeout=SAFETY)
    sub.ehlo("x")
    try:
        sub.login(user, "slow-pw")
        raise AssertionError("a locked account logged in")
    except smtplib.SMTPAuthenticationError as e:
        assert e.smtp_code == 535
    sub.close()
    # the signal is logged once it is stored: not yet
    assert "account=slow@example.test signal=spamtrap" not in k.log()
    k.stop()
    k.start()
    st = status(k, user)
    assert st["locked"] and st["evidence"][0]["signal"] == "spamtrap", st
    log = k.log()
    assert "account=slow@example.test signal=spamtrap" in log
    assert "account=slow@example.test decision=lock" in log
    with socket.create_connection(("127.0.0.1", k.port), timeout=SAFETY) as c:
        assert c.recv(100).startswith(b"220")


def test_account_status_reads_the_evidence_off_the_loop(kurier_factory, monkeypatch):
    """`kurier account status` reads the evidence from the directory on a worker
    (KURIER_TEST_DELAY "abuse=MS" holds that read): the daemon answers others
    meanwhile; a client that hangs up before the answer, or a stop while the read
    waits, leaves nothing behind (ASan build)."""
    monkeypatch.setenv("KURIER_TEST_DELAY", "abuse=8000")
    k = make(kurier_factory, "    spamtraps traps.test;\n")
    monkeypatch.delenv("KURIER_TEST_DELAY")
    user = "slow@example.test"
    with login(k, user) as s:
        send(s, user, ["x@traps.test"])
    k.wait_log("account=slow@example.test signal=spamtrap")  # stored: the writes are done
    sock = os.path.join(k.dir, "var", "control.sock")
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock)
    c.sendall(("account-status %s\n" % user).encode())
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as m:  # the loop is free
        assert m.noop()[0] == 250
    # ... and the answer still waits for the read (it used to be made on the loop)
    assert select.select([c], [], [], 0)[0] == []
    c.settimeout(SAFETY)
    answer = b""
    while not answer.endswith(b"\n.\n"):
        chunk = c.recv(65536)
        assert chunk, answer
        answer += chunk
    c.close()
    assert answer.startswith(b"ok\n") and b"spamtrap" in answer, answer
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock)
    c.sendall(("account-status %s\n" % user).encode())
    c.close()  # gone before the answer
    st = status(k, user)
    assert st["locked"] and st["evidence"][0]["signal"] == "spamtrap", st
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock)
    c.sendall(b"account-status\n")
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as m:  # the request is read
        assert m.noop()[0] == 250
    assert k.stop() == 0, k.log()[-3000:]  # while that read waits
    c.close()
    assert "AddressSanitizer" not in k.log() and "runtime error" not in k.log()
