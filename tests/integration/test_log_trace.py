#!/usr/bin/python3
"""Issue 17 item 7: every accepted message gets a "ID: message-id=<...>" line (as
Postfix's cleanup logs it), and `kurier log trace ID|MESSAGE-ID|ADDRESS` prints every
line of that message's life from the log a real kurierd wrote: its SMTP session from
connect to disconnect, cleanup, the queue manager, deliveries, and nothing of other
messages."""

import os
import re
import smtplib
import subprocess

from conftest import BUILD, SAFETY
from test_bounces import daemon, rx  # noqa: F401 (fixture)

SENDMAIL = os.path.join(BUILD, "sendmail")


def send(k, rcpt, msgid=None, sender="alice@example.test", subject="hi"):
    hdr = "From: %s\r\nTo: %s\r\nSubject: %s\r\n" % (sender, rcpt, subject)
    if msgid:
        hdr += "Message-ID:\r\n %s\r\n" % msgid  # folded, as some clients write it
    with smtplib.SMTP("127.0.0.1", k.port, timeout=30) as s:
        s.ehlo("client.example")
        assert s.sendmail(sender, [rcpt], (hdr + "\r\nbody\r\n").encode()) == {}


def qid_of(k, msgid):
    m = re.search(r"([0-9A-Z]+): message-id=" + re.escape(msgid), k.log())
    assert m, k.log()[-3000:]
    return m.group(1)


def trace(k, *args, check=True):
    r = k.cli("log", "trace", *args, check=check)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_message_id_logged_and_traced(kurier):
    k = kurier
    k.add_mailbox("bob@example.test", "pw")
    send(k, "demo@example.test", "<first.1@client.example>")
    send(k, "bob@example.test", "<second.2@client.example>", sender="carol@example.test")
    k.wait_mail("demo@example.test")
    k.wait_mail("bob@example.test")
    k.wait_queue_empty()
    q1 = qid_of(k, "<first.1@client.example>")
    q2 = qid_of(k, "<second.2@client.example>")
    assert q1 != q2
    log = k.log()
    assert "kurier/cleanup[" in log and "%s: message-id=<first.1@client.example>" % q1 in log

    rc, out, err = trace(k, q1, "--file", k.logfile)
    assert rc == 0, err
    lines = out.splitlines()
    want = ["connect from", "%s: client=" % q1, "%s: message-id=<first.1@client.example>" % q1,
            "%s: from=<alice@example.test>" % q1, "%s: to=<demo@example.test>" % q1,
            "status=sent", "disconnect from"]
    for w in want:
        assert any(w in l for l in lines), (w, out)
    # in the log's order, and nothing of the other message or its session
    pos = [next(i for i, l in enumerate(lines) if w in l) for w in want[:2]]
    assert pos == sorted(pos)
    assert q2 not in out and "bob@example.test" not in out and "carol" not in out
    # the session's lines are those of its own smtpd[N]
    tags = {re.search(r"kurier/(smtpd\[\d+\])", l).group(1) for l in lines if "/smtpd[" in l}
    assert len(tags) == 1, out

    # by Message-ID, with or without the angle brackets: the same lines
    rc2, out2, _ = trace(k, "<first.1@client.example>", "--file", k.logfile)
    assert (rc2, out2) == (0, out)
    rc3, out3, _ = trace(k, "first.1@client.example", "--file", k.logfile)
    assert out3 == out

    # by address: every message from or to it
    rc, out, _ = trace(k, "bob@example.test", "--file", k.logfile)
    assert rc == 0 and "%s: to=<bob@example.test>" % q2 in out and q1 not in out
    rc, out, _ = trace(k, "ALICE@example.test", "--file", k.logfile)
    assert q1 in out and q2 not in out

    # from standard input, and from the config's log { file }
    r = subprocess.run([os.path.join(BUILD, "kurier"), "-c", k.conf, "log", "trace", q2,
                        "--file", "-"], input=open(k.logfile, "rb").read(),
                       capture_output=True, timeout=SAFETY)
    assert r.returncode == 0 and q2 in r.stdout.decode()
    # lines as the journal shows kurierd's stderr: its own tag in front
    prefixed = b"".join(b"Dec 06 21:00:00 host kurierd[4242]: " + l
                        for l in open(k.logfile, "rb").read().splitlines(True))
    r = subprocess.run([os.path.join(BUILD, "kurier"), "-c", k.conf, "log", "trace", q2,
                        "--file", "-"], input=prefixed, capture_output=True, timeout=SAFETY)
    assert r.returncode == 0
    got = [l.split(": ", 1)[1] for l in r.stdout.decode().splitlines()]
    assert got == trace(k, q2, "--file", k.logfile)[1].splitlines()
    conf = open(k.conf).read().replace("log {\n", "log {\n    file %s;\n" % k.logfile, 1)
    with open(k.conf, "w") as f:
        f.write(conf)
    rc, out4, _ = trace(k, q2)
    assert rc == 0 and "%s: message-id=<second.2@client.example>" % q2 in out4

    # nothing found: exit 1 and say so
    rc, out, err = trace(k, "nobody@nowhere.test", check=False)
    assert rc == 1 and out == "" and "no log lines" in err


def test_bounce_of_a_message_is_part_of_its_trace(kurier_factory, rx):
    """A message that bounces: its trace follows the notice it caused, to the
    notice's own delivery."""
    k = daemon(kurier_factory, rx)
    with smtplib.SMTP("127.0.0.1", k.port, timeout=30) as s:
        s.sendmail("alice@example.test", ["bad@remote.test"],
                   b"From: alice@example.test\r\nMessage-ID: <bounced@client.example>\r\n"
                   b"Subject: x\r\n\r\nbody\r\n")
    k.wait_mail("alice@example.test", 1)
    k.wait_queue_empty()
    q = qid_of(k, "<bounced@client.example>")
    m = re.search(re.escape(q) + r": sender non-delivery notification: ([0-9A-Z]+)", k.log())
    assert m, k.log()[-3000:]
    rc, out, _ = trace(k, "<bounced@client.example>", "--file", k.logfile)
    assert rc == 0
    assert "%s: to=<bad@remote.test>" % q in out and "status=bounced" in out
    assert "%s: to=<alice@example.test>" % m.group(1) in out  # the notice's delivery


def test_local_submission_gets_a_message_id_line(kurier):
    r = subprocess.run([SENDMAIL, "demo@example.test"], input=b"Subject: local\n\nhi\n",
                       capture_output=True, timeout=SAFETY,
                       env=dict(os.environ, KURIER_CONF=kurier.conf))
    assert r.returncode == 0, r.stderr
    kurier.wait_mail("demo@example.test")
    m = re.search(r"([0-9A-Z]+): message-id=(<[^>]+>)", kurier.log())
    assert m, kurier.log()[-2000:]
    rc, out, _ = trace(kurier, m.group(2), "--file", kurier.logfile)
    assert rc == 0 and "%s: uid=" % m.group(1) in out and "status=sent" in out
