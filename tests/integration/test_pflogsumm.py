#!/usr/bin/python3
"""kurier logs in Postfix's shape so that the tools admins already run on Postfix logs
work unchanged. Here Debian's pflogsumm reads the daemon's log after a known mix of
traffic, and its report must count what happened."""

import os
import pwd
import re
import shutil
import smtplib
import subprocess

import pytest

from conftest import Raw

PFLOGSUMM = shutil.which("pflogsumm") or "/usr/sbin/pflogsumm"

pytestmark = pytest.mark.skipif(not os.path.exists(PFLOGSUMM), reason="pflogsumm not installed")

MSG = b"From: a@remote.test\r\nSubject: %s\r\n\r\nbody\r\n"


def pflogsumm(logfile, *opts):
    r = subprocess.run([PFLOGSUMM, "--syslog-name=kurier"] + list(opts) + [logfile],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode(errors="replace")


def grand_totals(report):
    m = re.search(r"^Grand Totals\n-+\n(.*?)\n\n(?:Per-|smtpd)", report, re.S | re.M)
    assert m, report
    section = m.group(1)
    totals = {}
    for label in ("received", "delivered", "forwarded", "deferred", "bounced", "rejected",
                  "reject warnings", "held", "discarded", "senders",
                  "sending hosts/domains", "recipients", "recipient hosts/domains"):
        mm = re.search(r"^\s*(\d+)\s+%s\b" % re.escape(label), section, re.M)
        assert mm, (label, section)
        totals[label] = int(mm.group(1))
    return totals


def send(port, rcpts, subject, source=None):
    with smtplib.SMTP("127.0.0.1", port, timeout=10,
                      source_address=(source, 0) if source else None) as s:
        assert s.sendmail("a@remote.test", rcpts, MSG % subject.encode()) == {}


def test_pflogsumm_counts_kurier_traffic(kurier_factory):
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.add_mailbox("two@example.test", "two")
    k.add_mailbox("blocked@example.test", "blocked")
    # blocked@'s mailbox path is taken by a plain file: its delivery is deferred
    dom = os.path.join(k.maildir_root, "example.test")
    os.makedirs(dom)
    if os.geteuid() == 0:  # the daemon runs as user kurier and creates folders here
        pw = pwd.getpwnam("kurier")
        for d in (k.maildir_root, dom):
            os.chown(d, pw.pw_uid, pw.pw_gid)
    with open(os.path.join(dom, "blocked"), "w") as f:
        f.write("not a folder\n")
    k.start()
    k.wait_log("daemon started")

    # received 4, delivered 5 (one message has two recipients)
    for i in range(3):
        send(k.port, ["demo@example.test"], "plain %d" % i)
    send(k.port, ["demo@example.test", "two@example.test"], "two recipients")

    # rejected 3 at RCPT: two unknown users and one relay attempt
    c = Raw(k.port)
    try:
        assert c.reply()[0] == 220
        c.cmd("EHLO client.example")
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<nobody@example.test>")
        assert code == 550 and "5.1.1" in text, text
        code, text = c.cmd("RCPT TO:<ghost@example.test>")
        assert code == 550 and "5.1.1" in text, text
        code, text = c.cmd("RCPT TO:<someone@remote.test>")
        assert code == 554 and "Relay access denied" in text, text
        # rejected 1 more at the end of DATA: a bare LF in the message
        assert c.cmd("RCPT TO:<demo@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: bare\r\n\r\nbare\nLF\r\n.\r\n")
        code, text = c.reply()
        assert code == 550 and "5.6.0" in text, text
        assert c.cmd("QUIT")[0] == 221
    finally:
        c.close()

    # received 1 more, deferred 1 (retried, so maybe several deferrals)
    send(k.port, ["blocked@example.test"], "blocked")

    k.wait_mail("demo@example.test", count=4)
    k.wait_mail("two@example.test", count=1)
    k.wait_log("to=<blocked@example.test>, relay=local")
    k.wait_log("status=deferred")
    assert k.stop() == 0

    report = pflogsumm(k.logfile)
    totals = grand_totals(report)
    print(report[:1500])
    assert totals["received"] == 5, report[:1500]
    assert totals["delivered"] == 5, report[:1500]
    assert totals["deferred"] == 1, report[:1500]
    assert totals["bounced"] == 0
    assert totals["rejected"] == 4, report[:1500]
    assert totals["forwarded"] == 0
    assert totals["senders"] == 1  # a@remote.test
    assert totals["recipients"] == 2  # demo, two (pflogsumm counts only delivered ones)
    assert "example.test" in report.split("Host/Domain Summary: Message Delivery", 1)[1]

    detail = report.split("message reject detail", 1)[1].split("message reject warning", 1)[0]
    assert re.search(r"Recipient address rejected: no such user here \(total: 2\)", detail), \
        detail
    assert "nobody@example.test" in detail and "ghost@example.test" in detail, detail
    assert re.search(r"Relay access denied.*\(total: 1\)", detail), detail
    assert "DATA" in detail, detail
    deferral = report.split("message deferral detail", 1)[1].split("message bounce", 1)[0]
    assert re.search(r"local \(total: [1-9]\d*\)", deferral), deferral
    assert "Not a directory" in deferral, deferral


def test_pflogsumm_smtpd_stats_counts_overlapping_connections(kurier):
    """pflogsumm --smtpd-stats pairs "connect from" and "disconnect from" lines by the
    process id in smtpd[PID] (Postfix runs one smtpd process per connection). Two
    sessions open at the same time must be two connections in the report."""
    a = Raw(kurier.port)
    b = Raw(kurier.port)
    try:
        assert a.reply()[0] == 220
        assert b.reply()[0] == 220
        assert a.cmd("EHLO a.example")[0] == 250
        assert b.cmd("EHLO b.example")[0] == 250
        assert a.cmd("QUIT")[0] == 221
        assert a.closed()
        assert b.cmd("QUIT")[0] == 221
        assert b.closed()
    finally:
        a.close()
        b.close()
    kurier.wait_log("daemon started")
    kurier.wait_log("disconnect from unknown[127.0.0.1] ehlo=1 quit=1 commands=2")
    assert kurier.stop() == 0
    log = kurier.log()
    # the fixture's port probe is a third connection ("lost connection" without QUIT)
    conns = log.count("]: connect from ")
    assert log.count("]: disconnect from ") == conns, log
    report = pflogsumm(kurier.logfile, "--smtpd-stats")
    m = re.search(r"^smtpd\n\n\s*(\d+)\s+connections$", report, re.M)
    assert m, report[:2000]
    assert int(m.group(1)) == conns, log + report[:2000]
