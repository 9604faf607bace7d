#!/usr/bin/python3
"""Mailbox quotas are enforced inside the SMTP dialogue (issue 9 item 5): what would
sit in the queue as "mailbox full" and expire without a word to an untrusted sender
is refused while the client can still tell its sender. RCPT: 452 4.2.2 for a full
mailbox or when MAIL's SIZE= does not fit the room left (552 5.2.2 when it exceeds
the whole quota). End of DATA/BDAT: 552 5.2.2 when the message fits no recipient;
when it fits some, a trusted sender (who gets a bounce) is accepted, an untrusted
one gets 452 4.2.2 for the message."""

import base64
import glob
import json
import os
import smtplib

import pytest

from conftest import Raw

AUTH_LISTENER = "    auth on;\n    auth_plaintext on;\n"
QUOTA = 1024 * 1024


@pytest.fixture
def k(kurier_factory):
    """small@ has a 1 MiB quota, big@ none; AUTH on the MX listener for a trusted
    sender (u@, who gets bounces)."""
    k = kurier_factory(listen_extra=AUTH_LISTENER)
    k.add_domain("example.test")
    k.add_mailbox("small@example.test", quota="1M")
    k.add_mailbox("big@example.test")
    k.add_mailbox("u@example.test", "upass")
    k.start()
    return k


def queued(k):
    """IDs of the messages in the queue now."""
    out = k.cli("queue", "list", "--json").stdout.decode()
    return [json.loads(line)["id"] for line in out.splitlines() if line.strip()]


def body(size, frm="someone@remote.example"):
    """A message of about size bytes: headers and 78-byte lines."""
    head = "From: %s\r\nSubject: %d bytes\r\n\r\n" % (frm, size)
    line = "x" * 76 + "\r\n"
    return head + line * (max(0, size - len(head)) // len(line))


class Session:
    def __init__(self, k, user=None, password=None):
        self.c = Raw(k.port)
        code, text = self.c.reply()
        assert code == 220, text
        code, text = self.c.cmd("EHLO client.example")
        assert code == 250, text
        if user:
            token = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
            code, text = self.c.cmd("AUTH PLAIN " + token)
            assert code == 235, text

    def cmd(self, line):
        return self.c.cmd(line)

    def data(self, text):
        """DATA with text (no SIZE was given); returns the reply to the final dot."""
        code, reply = self.c.cmd("DATA")
        assert code == 354, reply
        self.c.send(text + ".\r\n")
        return self.c.reply()

    def close(self):
        try:
            self.c.send("QUIT\r\n")
        except OSError:
            pass
        self.c.close()


@pytest.fixture
def session(k):
    made = []

    def open_(user=None, password=None):
        s = Session(k, user, password)
        made.append(s)
        return s

    yield open_
    for s in made:
        s.close()


def fill(k, size):
    """Deliver size bytes to small@ (it fits) and wait for it."""
    before = len(k.maildir_new("small@example.test"))
    with smtplib.SMTP("127.0.0.1", k.port, timeout=30) as s:
        s.sendmail("u@example.test", ["small@example.test"], body(size).encode())
    k.wait_mail("small@example.test", before + 1, timeout=30)


def test_too_big_for_the_quota_is_refused_at_end_of_data(k, session):
    # 2 MB to a 1 MB mailbox, without SIZE=: refused at the final dot, nothing queued
    s = session()
    assert s.cmd("MAIL FROM:<stranger@remote.example>")[0] == 250
    assert s.cmd("RCPT TO:<small@example.test>")[0] == 250
    code, text = s.data(body(2 * QUOTA))
    assert code == 552, text
    assert "5.2.2" in text and "<small@example.test>" in text, text
    assert queued(k) == []
    k.wait_log("reject: DATA from")
    assert "client=" not in k.log()  # never committed
    # the session goes on
    assert s.cmd("MAIL FROM:<stranger@remote.example>")[0] == 250
    assert s.cmd("RCPT TO:<small@example.test>")[0] == 250
    code, text = s.data(body(1000))
    assert code == 250, text
    k.wait_mail("small@example.test")


def test_too_big_in_bdat_is_refused_at_last_chunk(k, session):
    s = session()
    assert s.cmd("MAIL FROM:<stranger@remote.example>")[0] == 250
    assert s.cmd("RCPT TO:<small@example.test>")[0] == 250
    msg = body(2 * QUOTA).encode()
    s.c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
    code, text = s.c.reply()
    assert code == 552 and "5.2.2" in text, text
    assert queued(k) == []


def test_full_mailbox_is_refused_at_rcpt(k, session):
    fill(k, 600 * 1024)
    k.cli("mailbox", "quota", "small@example.test", "500K")
    s = session()
    assert s.cmd("MAIL FROM:<stranger@remote.example>")[0] == 250
    code, text = s.cmd("RCPT TO:<small@example.test>")
    assert code == 452, text
    assert "4.2.2" in text and "mailbox is full" in text, text
    assert s.cmd("RCPT TO:<big@example.test>")[0] == 250


def test_size_over_the_room_left_is_refused_at_rcpt(k, session):
    s = session()
    # bigger than the whole quota: it will never fit
    assert s.cmd("MAIL FROM:<stranger@remote.example> SIZE=%d" % (2 * QUOTA))[0] == 250
    code, text = s.cmd("RCPT TO:<small@example.test>")
    assert code == 552 and "5.2.2" in text, text
    assert s.cmd("RSET")[0] == 250
    fill(k, 600 * 1024)
    # 600 KiB used of 1 MiB: 500 KiB do not fit now, per recipient
    assert s.cmd("MAIL FROM:<stranger@remote.example> SIZE=%d" % (500 * 1024))[0] == 250
    code, text = s.cmd("RCPT TO:<small@example.test>")
    assert code == 452, text
    assert "4.2.2" in text and "not enough room" in text, text
    assert s.cmd("RCPT TO:<big@example.test>")[0] == 250
    assert s.cmd("RSET")[0] == 250
    # what fits is accepted
    assert s.cmd("MAIL FROM:<stranger@remote.example> SIZE=%d" % (100 * 1024))[0] == 250
    assert s.cmd("RCPT TO:<small@example.test>")[0] == 250


def test_fits_some_recipients_untrusted_sender_gets_452(k, session):
    fill(k, 600 * 1024)
    n = len(queued(k))
    s = session()
    assert s.cmd("MAIL FROM:<stranger@remote.example>")[0] == 250
    assert s.cmd("RCPT TO:<small@example.test>")[0] == 250
    assert s.cmd("RCPT TO:<big@example.test>")[0] == 250
    code, text = s.data(body(500 * 1024))
    # temporary: the sending server keeps the message and its sender hears of it
    assert code == 452, text
    assert "4.2.2" in text and "<small@example.test>" in text, text
    assert len(queued(k)) == n
    assert k.maildir_new("big@example.test") == []


def test_fits_some_recipients_trusted_sender_is_accepted(k, session):
    fill(k, 600 * 1024)
    s = session("u@example.test", "upass")
    assert s.cmd("MAIL FROM:<u@example.test>")[0] == 250
    assert s.cmd("RCPT TO:<small@example.test>")[0] == 250
    assert s.cmd("RCPT TO:<big@example.test>")[0] == 250
    code, text = s.data(body(500 * 1024, "u@example.test"))
    assert code == 250, text
    k.wait_mail("big@example.test")
    # small@ waits in the queue; u@ would get the bounce if it never fits
    k.wait_log("dsn=4.2.2, status=deferred (mailbox full", timeout=30)
    assert "small@example.test" in k.cli("queue", "list").stdout.decode()
    # with room it is delivered on the next retry
    k.cli("mailbox", "quota", "small@example.test", "0")
    k.wait_mail("small@example.test", 2, timeout=30)


def test_fits_no_recipient_trusted_sender_is_refused_too(k, session):
    s = session("u@example.test", "upass")
    assert s.cmd("MAIL FROM:<u@example.test>")[0] == 250
    assert s.cmd("RCPT TO:<small@example.test>")[0] == 250
    code, text = s.data(body(2 * QUOTA, "u@example.test"))
    assert code == 552 and "5.2.2" in text, text
    assert queued(k) == []
