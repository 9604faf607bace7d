#!/usr/bin/python3
"""The ESMTP server end to end: real kurierd, real clients (swaks, smtplib, raw
sockets), mail checked in the Maildir a user would read."""

import smtplib
import subprocess

import pytest

from conftest import Raw, free_port

MSG = (b"From: a@remote.test\r\nTo: demo@example.test\r\nSubject: hello\r\n\r\n"
       b"line one\r\n.dotted line\r\nlast line\r\n")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_swaks_delivers_to_maildir(kurier):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % kurier.port, "--from",
                        "a@remote.test", "--to", "demo@example.test", "--h-Subject",
                        "swaks test"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert b"250 2.0.0 Ok: queued as" in r.stdout
    files = kurier.wait_mail("demo@example.test")
    body = read(files[0])
    assert body.startswith(b"Return-Path: <a@remote.test>\nDelivered-To: demo@example.test\n")
    assert b"Received: from " in body and b"by mx.example.test (kurier) with ESMTP id" in body
    assert b"Subject: swaks test" in body
    assert b"\r\n" not in body  # Maildir files use LF
    kurier.wait_log("status=sent")  # the file appears before the result is logged
    log = kurier.log()
    assert "status=sent (delivered to maildir)" in log
    assert "to=<demo@example.test>, relay=local" in log


def test_smtplib_and_dot_unstuffing(kurier):
    with smtplib.SMTP("127.0.0.1", kurier.port, timeout=10) as s:
        refused = s.sendmail("a@remote.test", ["demo@example.test"], MSG)
        assert refused == {}
    body = read(kurier.wait_mail("demo@example.test")[0])
    assert b"\n.dotted line\n" in body
    assert b"\n..dotted" not in body  # smtplib stuffed it, kurier unstuffed it


def test_ehlo_extensions(raw):
    c = raw()
    code, text = c.cmd("EHLO client.example")
    assert code == 250
    for ext in ["PIPELINING", "SIZE ", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                "CHUNKING", "DSN"]:
        assert ext in text, ext
    assert "STARTTLS" not in text  # no TLS configured on this listener


def test_unknown_user_rejected_at_rcpt(kurier, raw):
    c = raw()
    c.cmd("EHLO client.example")
    assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
    code, text = c.cmd("RCPT TO:<nobody@example.test>")
    assert code == 550 and "5.1.1" in text, text
    assert "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1" in kurier.log()
    # domain and local part are case-insensitive
    assert c.cmd("RCPT TO:<Demo@EXAMPLE.test>")[0] == 250


@pytest.mark.parametrize("rcpt", [
    "<someone@remote.test>",
    "<user%remote.test@example.test>",
    "<\"user@remote.test\"@example.test>",
    "<@example.test:user@remote.test>",
    "<remote.test!user@example.test>",
    "<user@remote.test@example.test>",
])
def test_relay_tricks_never_relay(kurier, raw, rcpt):
    c = raw()
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<a@remote.test>")
    code, text = c.cmd("RCPT TO:%s" % rcpt)
    assert code >= 500, (rcpt, text)
    # nothing was queued for anyone
    c.cmd("QUIT")
    out = kurier.cli("queue", "list").stdout.decode()
    assert "empty" in out.lower(), out


def test_relay_denied_text(kurier, raw):
    c = raw()
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<a@remote.test>")
    code, text = c.cmd("RCPT TO:<someone@remote.test>")
    assert code == 554 and "5.7.1" in text and "Relay access denied" in text


def closed_port():
    """A loopback port nobody listens on: relaying there defers, never loses."""
    return free_port()


def started(kurier_factory, mailbox=False, **kw):
    """A running kurierd made with kw, for domain example.test (and mailbox
    demo@example.test when mailbox)."""
    k = kurier_factory(**kw)
    k.add_domain("example.test")
    if mailbox:
        k.add_mailbox("demo@example.test")
    k.start()
    return k


def greeted(k):
    """A Raw connection to k with its greeting read."""
    c = Raw(k.port)
    c.reply()
    return c


def test_trusted_network_may_relay(kurier_factory):
    k = started(kurier_factory, extra="relay {\n    trusted_networks 127.0.0.0/8;\n}\n"
                "relay_host 127.0.0.1:%d;\n" % closed_port())
    with smtplib.SMTP("127.0.0.1", k.port, timeout=10) as s:
        s.sendmail("a@example.test", ["someone@remote.test"], MSG)
    # the smarthost refuses connections: the message stays queued, not lost
    k.wait_log("status=deferred")
    out = k.cli("queue", "list").stdout.decode()
    assert "someone@remote.test" in out


def test_pipelined_transaction_in_one_packet(kurier, raw):
    c = raw()
    c.send(b"EHLO client.example\r\nMAIL FROM:<a@remote.test>\r\n"
           b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 250
    assert c.reply()[0] == 550
    assert c.reply()[0] == 250
    assert c.reply()[0] == 354
    c.send(b"Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    code, text = c.reply()
    assert code == 250 and "queued as" in text
    assert c.reply()[0] == 221
    assert b"Subject: piped" in read(kurier.wait_mail("demo@example.test")[0])


def test_chunking(kurier, raw):
    c = raw()
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<a@remote.test> BODY=8BITMIME")
    c.cmd("RCPT TO:<demo@example.test>")
    part1 = b"Subject: chunks\r\n\r\n"
    part2 = b"first\r\n.leading dot stays\r\n"
    c.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert c.reply()[0] == 250
    c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, text = c.reply()
    assert code == 250 and "queued as" in text, text
    body = read(kurier.wait_mail("demo@example.test")[0])
    assert b"\n.leading dot stays\n" in body  # BDAT content is not dot-unstuffed
    # DATA after BDAT in one transaction is a sequence error
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<demo@example.test>")
    c.send(b"BDAT 5\r\nhello")
    assert c.reply()[0] == 250
    assert c.cmd("DATA")[0] == 503


def test_bdat_zero_last(kurier, raw):
    c = raw()
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<demo@example.test>")
    part = b"Subject: x\r\n\r\nbody\r\n"
    c.send(b"BDAT %d\r\n" % len(part) + part)
    assert c.reply()[0] == 250
    code, text = c.cmd("BDAT 0 LAST")
    assert code == 250 and "queued as" in text, text
    kurier.wait_mail("demo@example.test")


SMUGGLING = [
    b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\r", b"\r.\r\n", b"\n.\r",
]


@pytest.mark.parametrize("fake_end", SMUGGLING)
def test_smuggling_is_not_a_second_message(kurier, raw, fake_end):
    c = raw()
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<demo@example.test>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: outer\r\n\r\nouter body" + fake_end +
           b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n"
           b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
    code, text = c.reply()
    assert code == 550 and "5.6.0" in text, text
    # the session is still in sync: the next command gets its own reply
    assert c.cmd("NOOP")[0] == 250
    c.cmd("QUIT")
    assert c.closed()  # the session is over: whatever it queued is in the queue
    kurier.wait_queue_empty()
    assert kurier.maildir_new("demo@example.test") == []


def test_long_command_line(kurier, raw):
    c = raw()
    c.cmd("EHLO client.example")
    code, text = c.cmd("NOOP " + "x" * 2000)
    assert code == 500 and "5.5.2" in text
    assert c.cmd("NOOP")[0] == 250


def test_long_data_line(kurier, raw):
    c = raw()
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<demo@example.test>")
    c.cmd("DATA")
    c.send(b"Subject: long\r\n\r\n" + b"y" * 1000 + b"\r\n.\r\n")
    code, text = c.reply()
    assert code == 550 and "5.6.0" in text and "998" in text


def test_message_size_limit(kurier_factory):
    k = started(kurier_factory, mailbox=True, limits={"message_size": "2k"})
    c = greeted(k)
    c.cmd("EHLO client.example")
    code, text = c.cmd("MAIL FROM:<a@remote.test> SIZE=999999")
    assert code == 552 and "5.3.4" in text
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<demo@example.test>")
    c.cmd("DATA")
    c.send(b"Subject: big\r\n\r\n" + (b"z" * 70 + b"\r\n") * 100 + b".\r\n")
    code, text = c.reply()
    assert code == 552 and "5.3.4" in text
    c.close()


def test_recipient_limit(kurier_factory):
    k = started(kurier_factory, mailbox=True, limits={"recipients": "2"})
    c = greeted(k)
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<a@remote.test>")
    assert c.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<demo@example.test>")[0] == 250
    code, text = c.cmd("RCPT TO:<demo@example.test>")
    assert code == 452 and "4.5.3" in text
    c.close()


def test_error_limit_closes(kurier_factory):
    k = started(kurier_factory, limits={"errors": "3"})
    c = greeted(k)
    assert c.cmd("BOGUS")[0] == 500
    assert c.cmd("BOGUS")[0] == 500
    code, text = c.cmd("BOGUS")
    assert code == 500
    code, text = c.reply()
    assert code == 421 and "4.7.0" in text
    assert c.closed()
    c.close()


def test_hop_count(kurier, raw):
    c = raw()
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<demo@example.test>")
    c.cmd("DATA")
    hdrs = b"".join(b"Received: from hop%d by hop%d; date\r\n" % (i, i) for i in range(51))
    c.send(hdrs + b"Subject: loop\r\n\r\nbody\r\n.\r\n")
    code, text = c.reply()
    assert code == 554 and "5.4.6" in text


def test_connections_per_ip(kurier_factory):
    k = started(kurier_factory, limits={"connections_per_ip": "2"})
    k.wait_log("disconnect from")  # the start-up probe connection is gone
    a, b = Raw(k.port), Raw(k.port)
    assert a.reply()[0] == 220 and b.reply()[0] == 220
    c = Raw(k.port)
    code, text = c.reply()
    assert code == 421 and "4.7.0" in text
    for x in (a, b, c):
        x.close()


def test_command_timeout(kurier_factory):
    k = started(kurier_factory, limits={"command_timeout": "1s"})
    c = greeted(k)
    code, text = c.reply()  # waits for the timeout
    assert code == 421 and "4.4.2" in text
    assert c.closed()
    c.close()


def test_sequence_and_misc_commands(raw):
    c = raw()
    code, text = c.cmd("MAIL FROM:<a@remote.test>")
    assert code == 503 and "5.5.1" in text
    c.cmd("EHLO client.example")
    assert c.cmd("RCPT TO:<demo@example.test>")[0] == 503
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("VRFY demo")[0] == 252
    assert c.cmd("HELP")[0] == 214
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("RSET")[0] == 250
    code, text = c.cmd("MAIL FROM:<a@remote.test> FOO=bar")
    assert code == 555, text
    code, text = c.cmd("MAIL FROM:<bad address>")
    assert code == 501 and "5.1.7" in text, text
    assert c.cmd("QUIT")[0] == 221


def test_dsn_parameters_are_kept(kurier_factory):
    k = started(kurier_factory, extra="relay {\n    trusted_networks 127.0.0.0/8;\n}\n"
                "relay_host 127.0.0.1:%d;\n" % closed_port(),
                queue={"retry_first": "1h"})
    c = greeted(k)
    c.cmd("EHLO client.example")
    assert c.cmd("MAIL FROM:<a@example.test> RET=HDRS ENVID=abc+2Bdef")[0] == 250
    assert c.cmd("RCPT TO:<x@remote.test> NOTIFY=SUCCESS,DELAY "
                 "ORCPT=rfc822;orig+2Bx@remote.test")[0] == 250
    c.cmd("DATA")
    code, text = c.cmd("Subject: dsn\r\n\r\nbody\r\n.")
    assert code == 250
    qid = text.split()[-1]
    c.close()
    out = k.cli("queue", "show", qid).stdout.decode()
    assert "abc+def" in out, out
    assert "rfc822;orig+x@remote.test" in out, out
    assert "SUCCESS" in out and "DELAY" in out, out


def test_total_connection_limit(kurier_factory):
    k = started(kurier_factory, limits={"connections": "2"})
    k.wait_log("disconnect from")  # the start-up probe connection is gone
    a, b = Raw(k.port), Raw(k.port)
    assert a.reply()[0] == 220 and b.reply()[0] == 220
    c = Raw(k.port)
    code, text = c.reply()
    assert code == 421 and "4.7.0" in text and "too many connections" in text
    for x in (a, b, c):
        x.close()


def test_data_timeout(kurier_factory):
    k = started(kurier_factory, mailbox=True, limits={"data_timeout": "1s"})
    c = greeted(k)
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<demo@example.test>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: stalled\r\n\r\nhalf a mess")
    code, text = c.reply()  # the client stalls in the middle of the message
    assert code == 421 and "4.4.2" in text
    assert c.closed()
    c.close()
    assert k.maildir_new("demo@example.test") == []
    assert "timeout after DATA" in k.log()
