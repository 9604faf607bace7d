#!/usr/bin/python3
"""Complaints (docs/abuse.md): an account sends through the submission port (real
AUTH); feedback-loop reports about that message (ARF built with Python's email
package as large receivers build them, and a SpamCop-style text report) come in on
the MX port to abuse@/fbl@; kurier matches them to the account by queue ID or by
Message-ID, logs them and hands them to the abuse callback, and still delivers every
report, also one it cannot read (kept for a human)."""

import email
import email.policy
import re
import smtplib
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from conftest import SAFETY, free_port


@pytest.fixture
def k(kurier_factory):
    k = kurier_factory(extra="complaints {\n    addresses abuse@example.test fbl@example.test;\n"
                             "    retention 30d;\n}\n")
    k.sub_port = free_port()
    with open(k.conf, "a") as f:
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    auth_plaintext on;\n}\n"
                % k.sub_port)
    k.add_domain("example.test")
    for box in ("alice", "victim", "abuse", "fbl", "carol"):
        k.add_mailbox(box + "@example.test", box + "pw")
    k.start()
    return k


def send_spam(k, user="alice", subject="Cheap watches"):
    """The account sends one message through submission; returns it as delivered
    (with our Received: header), its queue ID and its Message-ID."""
    before = len(k.maildir_new("victim@example.test"))
    with smtplib.SMTP("127.0.0.1", k.sub_port, timeout=SAFETY) as s:
        s.login(user + "@example.test", user + "pw")
        s.sendmail(user + "@example.test", ["victim@example.test"],
                   "From: <%s@example.test>\r\nTo: <victim@example.test>\r\nSubject: %s\r\n"
                   "\r\nBuy now.\r\n" % (user, subject))
    files = k.wait_mail("victim@example.test", before + 1)
    raw = open(sorted(files)[-1], "rb").read()
    text = raw.decode()
    qid = re.search(r"by mx\.example\.test \(kurier\) with ESMTPA id ([0-9A-Z]{14})", text).group(1)
    mid = re.search(r"^Message-ID: (<[^>]+>)", text, re.M | re.I).group(1)
    # as the receiver holds it: without the Return-Path:/Delivered-To: of our delivery
    return as_received(raw), qid, mid


def as_received(raw):
    """A delivered message as the receiver holds it: CRLF lines, without the
    Return-Path:/Delivered-To: of the delivery."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return re.sub(rb"^(Return-Path|Delivered-To): [^\r\n]*\r\n", b"", raw, flags=re.M)


def arf_report(original, headers_only=False):
    """An RFC 5965 report as large receivers' feedback loops send them."""
    rep = MIMEMultipart("report", report_type="feedback-report")
    rep["From"] = "Feedback Loop <fbl-noreply@bigmail.example>"
    rep["To"] = "fbl@example.test"
    rep["Subject"] = "Abuse report"
    rep["Message-ID"] = email.utils.make_msgid(domain="bigmail.example")
    rep.attach(MIMEText("This is an email abuse report for an email message received from "
                        "IP 127.0.0.1 on Sun, 06 Dec 2026 18:00:00 +0000.\n"))
    fb = Message()
    fb.set_type("message/feedback-report")
    fb.set_payload("Feedback-Type: abuse\r\nUser-Agent: BigMailFBL/1.0\r\nVersion: 1\r\n"
                   "Original-Mail-From: <alice@example.test>\r\n"
                   "Original-Rcpt-To: <victim@bigmail.example>\r\n"
                   "Arrival-Date: Sun, 06 Dec 2026 18:00:00 +0000\r\n"
                   "Source-IP: 127.0.0.1\r\nReported-Domain: example.test\r\n")
    rep.attach(fb)
    if headers_only:
        hdr = original.split(b"\r\n\r\n", 1)[0].decode() + "\r\n"
        # a receiver that strips the sender's Received: lines: only the Message-ID is left
        hdr = re.sub(r"^Received: .*?(?=^\S)", "", hdr, flags=re.M | re.S)
        assert "kurier" not in hdr
        part = MIMEText(hdr, "rfc822-headers")
        rep.attach(part)
    else:
        rep.attach(MIMEMessage(email.message_from_bytes(original, policy=email.policy.SMTP)))
    return rep.as_bytes(policy=email.policy.SMTP)


def spamcop_report(original):
    """SpamCop's plain text report with the spam quoted after "Offending message:"."""
    body = ("- SpamCop V5.4.0 -\r\n"
            "This message is brief for your comfort.  Please use links below for details.\r\n"
            "\r\nEmail from 127.0.0.1 / Sun, 06 Dec 2026 18:00:00 +0000\r\n"
            "https://www.spamcop.net/sc?id=z6789z\r\n\r\n"
            "[ Offending message ]\r\nOffending message:\r\n") + original.decode()
    return ("From: 1234567@reports.spamcop.net\r\nTo: abuse@example.test\r\n"
            "Subject: [SpamCop (127.0.0.1) id:7012345678]Cheap watches\r\n\r\n" + body).encode()


def mail_in(k, rcpt, data):
    """A report arrives at our MX from outside."""
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        s.sendmail("fbl-noreply@bigmail.example", [rcpt], data)


def test_arf_matched_by_queue_id(k):
    spam, qid, mid = send_spam(k)
    mail_in(k, "fbl@example.test", arf_report(spam))
    k.wait_log("arf complaint against account alice@example.test matched by queue-id: "
               "queue_id=%s message_id=%s feedback_type=abuse source_ip=127.0.0.1 "
               "user_agent=BigMailFBL/1.0" % (qid, mid))
    # counted against the account: an abuse signal with the report as its evidence
    k.wait_log("account=alice@example.test signal=complaint score=50")
    assert "about queue ID %s" % qid in k.log()
    # the report itself is delivered, nothing dropped
    files = k.wait_mail("fbl@example.test")
    assert b"feedback-report" in open(files[0], "rb").read()


def test_arf_headers_matched_by_message_id(k):
    spam, qid, mid = send_spam(k, user="carol", subject="Loans")
    mail_in(k, "fbl@example.test", arf_report(spam, headers_only=True))
    k.wait_log("arf complaint against account carol@example.test matched by message-id: "
               "queue_id=%s message_id=%s" % (qid, mid))
    k.wait_mail("fbl@example.test")
    # the other account is not named
    assert "against account alice@example.test" not in k.log()


def test_spamcop_matched(k):
    spam, qid, mid = send_spam(k)
    mail_in(k, "abuse@example.test", spamcop_report(spam))
    k.wait_log("spamcop complaint against account alice@example.test matched by queue-id: "
               "queue_id=%s message_id=%s" % (qid, mid))
    k.wait_mail("abuse@example.test")
    out = k.cli("complaints", "list", "--account", "alice@example.test").stdout.decode()
    assert qid in out and "spamcop" in out, out


def test_unparseable_and_unmatched_kept(k):
    mail_in(k, "abuse@example.test",
            b"From: angry@else.example\r\nTo: abuse@example.test\r\nSubject: stop it\r\n\r\n"
            b"Your customer keeps sending me junk!\r\n")
    k.wait_log("unmatched report to abuse@example.test from <angry@else.example>: not a report")
    k.wait_mail("abuse@example.test", 1)
    # a well-formed report about a message we never sent
    fake = (b"Received: by mx.example.test (kurier) with ESMTPA id 0000000000000A; x\r\n"
            b"Message-ID: <never@example.test>\r\nSubject: x\r\n\r\nx\r\n")
    mail_in(k, "fbl@example.test", arf_report(fake))
    k.wait_log("unmatched arf complaint to fbl@example.test from <fbl-noreply@bigmail.example>: "
               "queue_id=0000000000000A message_id=<never@example.test> (not in the record)")
    k.wait_mail("fbl@example.test", 1)
    assert "complaint against account" not in k.log()


def test_local_sender_recorded(k):
    """sendmail(1) is a local sender: its message is recorded under the user name."""
    import os
    import pwd
    r = k.cli("sendmail", "-f", "root@example.test", "victim@example.test",
              input=b"Subject: local\r\nMessage-ID: <local-1@example.test>\r\n\r\nhi\r\n",
              check=False)
    assert r.returncode == 0, r.stderr
    files = k.wait_mail("victim@example.test")
    text = open(files[-1], "rb").read()
    mail_in(k, "abuse@example.test", spamcop_report(as_received(text)))
    user = pwd.getpwuid(os.getuid()).pw_name
    k.wait_log("spamcop complaint against account %s matched by queue-id" % user)


def test_bad_intake_address_is_a_config_error(kurier_factory, tmp_path):
    k = kurier_factory()
    bad = tmp_path / "bad.conf"
    bad.write_text("complaints {\n    addresses abuse@example.test not-an-address;\n}\n")
    r = k.cli("config", "check", str(bad), check=False)
    err = r.stderr.decode()
    assert r.returncode != 0 and "not-an-address" in err and "abuse@example.org" in err, err


def test_shutdown_during_the_intake_keeps_the_message(k, monkeypatch):
    """A message the intake still holds when kurierd stops is in the spool, acknowledged:
    the next start delivers it (the intake never drops mail)."""
    k.stop()
    monkeypatch.setenv("KURIER_TEST_DELAY", "intake=60000")
    k.start()
    with smtplib.SMTP("127.0.0.1", k.sub_port, timeout=SAFETY) as s:
        s.login("alice@example.test", "alicepw")
        s.sendmail("alice@example.test", ["victim@example.test"],
                   "From: <alice@example.test>\r\nTo: <victim@example.test>\r\nSubject: held\r\n"
                   "\r\nwaits in the intake\r\n")
    assert k.stop() == 0
    assert k.maildir_new("victim@example.test") == []
    monkeypatch.delenv("KURIER_TEST_DELAY")
    k.start()
    files = k.wait_mail("victim@example.test")
    assert b"waits in the intake" in open(files[0], "rb").read()
