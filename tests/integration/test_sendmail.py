#!/usr/bin/python3
"""sendmail(1) compatibility end to end: build/sendmail (the kurier binary by another
name) writes into the maildrop, kurierd picks the file up and delivers it to the
Maildir. Run as root and as an unprivileged user, with the daemon up and down."""

import os
import re
import subprocess
import time

import pytest

from conftest import BUILD, for_user, free_port

SENDMAIL = os.path.join(BUILD, "sendmail")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def headers(body):
    return body.split(b"\n\n", 1)[0]


def sendmail(k, *args, input=b"", user=None, check=True):
    """Run sendmail ARGS < input with KURIER_CONF=<the test's config>."""
    argv = [SENDMAIL] + list(args)
    if user:
        argv = ["runuser", "-u", user, "--", for_user(SENDMAIL)] + list(args)
    env = dict(os.environ, KURIER_CONF=k.conf)
    r = subprocess.run(argv, input=input, capture_output=True, timeout=30, env=env)
    if check:
        assert r.returncode == 0, "%s: %d %r %r" % (argv, r.returncode, r.stdout, r.stderr)
    return r


@pytest.fixture
def k(kurier):
    kurier.add_mailbox("other@example.test")
    kurier.add_mailbox("hidden@example.test")
    return kurier


def test_plain_recipient_delivered_with_headers_added(k):
    sendmail(k, "demo@example.test", input=b"Subject: plain\n\nhello from sendmail\n")
    body = read(k.wait_mail("demo@example.test")[0])
    h = headers(body)
    assert b"Subject: plain" in h
    assert re.search(rb"^From: .*@", h, re.M), h
    assert re.search(rb"^Date: ", h, re.M), h
    assert re.search(rb"^Message-ID: <[^>]+@[^>]+>", h, re.M | re.I), h
    assert b"hello from sendmail\n" in body
    assert b"\r\n" not in body
    log = k.log()
    m = re.search(r"kurier/pickup\[\d+\]: ([0-9A-Z]+): uid=0 from=<[^>]*>", log)
    assert m, log[-3000:]
    # the Maildir file appears before the result is recorded and logged
    k.wait_log("%s: to=<demo@example.test>" % m.group(1))
    assert re.search(re.escape(m.group(1)) + r": to=<demo@example.test>.*status=sent", k.log())


def test_existing_headers_are_kept(k):
    msg = (b"From: Alice <alice@example.test>\nDate: Tue, 25 Nov 2025 13:31:13 +0000\n"
           b"Message-ID: <fixed.1@example.test>\nSubject: own headers\n\nbody\n")
    sendmail(k, "demo@example.test", input=msg)
    h = headers(read(k.wait_mail("demo@example.test")[0]))
    assert h.count(b"\nFrom: ") + h.startswith(b"From: ") == 1, h
    assert b"From: Alice <alice@example.test>" in h
    assert b"Date: Tue, 25 Nov 2025 13:31:13 +0000" in h
    assert len(re.findall(rb"^Message-ID:", h, re.M | re.I)) == 1, h
    assert b"Message-ID: <fixed.1@example.test>" in h


def test_t_takes_recipients_from_headers_and_drops_bcc(k):
    msg = (b"From: alice@example.test\nTo: demo@example.test\nCc: other@example.test\n"
           b"Bcc: hidden@example.test\nSubject: dash t\n\nbody\n")
    sendmail(k, "-t", input=msg)
    for rcpt in ["demo@example.test", "other@example.test", "hidden@example.test"]:
        body = read(k.wait_mail(rcpt)[0])
        assert b"Subject: dash t" in body
        assert b"Bcc:" not in body and b"hidden@example.test\n\n" not in body
        assert b"To: demo@example.test" in body and b"Cc: other@example.test" in body


def test_t_folded_bcc_is_removed_whole(k):
    msg = (b"From: alice@example.test\nTo: demo@example.test\n"
           b"Bcc: hidden@example.test,\n\tother@example.test\nSubject: folded\n\nbody\n")
    sendmail(k, "-t", input=msg)
    for rcpt in ["demo@example.test", "other@example.test", "hidden@example.test"]:
        body = read(k.wait_mail(rcpt)[0])
        h = [l for l in headers(body).split(b"\n") if not l.startswith(b"Delivered-To:")]
        assert not any(b"Bcc" in l or b"hidden@" in l for l in h), h
        assert b"\tother@example.test" not in h
        assert b"Subject: folded" in h


def test_t_with_display_names_and_several_addresses(k):
    msg = (b"From: alice@example.test\n"
           b"To: \"Demo, User\" <demo@example.test>,\n other@example.test\n"
           b"Subject: list\n\nbody\n")
    sendmail(k, "-t", "-i", input=msg)
    k.wait_mail("demo@example.test")
    k.wait_mail("other@example.test")


def test_f_sets_envelope_sender(k):
    sendmail(k, "-f", "bounces@example.test", "demo@example.test",
             input=b"Subject: envelope\n\nbody\n")
    body = read(k.wait_mail("demo@example.test")[0])
    assert body.startswith(b"Return-Path: <bounces@example.test>\n"), body[:200]
    assert re.search(r"kurier/pickup\[\d+\]: [0-9A-Z]+: uid=0 from=<bounces@example.test>",
                     k.log())


def test_f_attached_form(k):
    sendmail(k, "-fbounces@example.test", "demo@example.test", input=b"Subject: x\n\nbody\n")
    body = read(k.wait_mail("demo@example.test")[0])
    assert body.startswith(b"Return-Path: <bounces@example.test>\n"), body[:200]


def test_F_sets_full_name_in_from(k):
    sendmail(k, "-F", "Cron Daemon", "demo@example.test", input=b"Subject: named\n\nbody\n")
    h = headers(read(k.wait_mail("demo@example.test")[0]))
    m = re.search(rb"^From: (.*)$", h, re.M)
    assert m and b"Cron Daemon" in m.group(1) and b"@" in m.group(1), h


def test_lone_dot_ends_input_without_i(k):
    sendmail(k, "demo@example.test", input=b"Subject: dot\n\nbefore\n.\nafter\n")
    body = read(k.wait_mail("demo@example.test")[0])
    assert b"before\n" in body
    assert b"after" not in body


@pytest.mark.parametrize("opt", ["-i", "-oi"])
def test_i_keeps_lone_dot(k, opt):
    sendmail(k, opt, "demo@example.test", input=b"Subject: dot\n\nbefore\n.\n..\nafter\n")
    body = read(k.wait_mail("demo@example.test")[0])
    assert body.endswith(b"before\n.\n..\nafter\n"), body


def test_common_option_combination(k):
    # what PHP's mail(), cron and mutt pass
    sendmail(k, "-t", "-i", "-oem", "-odi", "-FCron Daemon",
             input=b"To: demo@example.test\nSubject: combo\n\nbody\n")
    body = read(k.wait_mail("demo@example.test")[0])
    assert b"Subject: combo" in body


def test_crlf_input_and_long_body(k):
    lines = b"".join(b"line %d\r\n" % i for i in range(2000))
    sendmail(k, "demo@example.test", input=b"Subject: crlf\r\n\r\n" + lines)
    body = read(k.wait_mail("demo@example.test")[0])
    assert b"\r" not in body
    assert body.endswith(b"line 1998\nline 1999\n")


def test_unprivileged_user(k):
    r = sendmail(k, "demo@example.test", user="nobody", input=b"Subject: from nobody\n\nhi\n")
    assert r.returncode == 0
    body = read(k.wait_mail("demo@example.test")[0])
    assert b"Subject: from nobody" in body
    assert re.search(r"kurier/pickup\[\d+\]: [0-9A-Z]+: uid=65534 from=<nobody@[^>]+>", k.log()), \
        k.log()[-3000:]


def test_unprivileged_user_cannot_forge_uid(k):
    # -f changes the envelope sender, but the pickup line names the real uid
    sendmail(k, "-f", "root@example.test", "demo@example.test", user="nobody",
             input=b"Subject: forged\n\nhi\n")
    k.wait_mail("demo@example.test")
    assert re.search(r"kurier/pickup\[\d+\]: [0-9A-Z]+: uid=65534 from=<root@example.test>",
                     k.log()), k.log()[-3000:]


def test_daemon_stopped_message_waits_in_maildrop(k):
    assert k.stop() == 0
    sendmail(k, "demo@example.test", input=b"Subject: while down\n\nhi\n")
    sendmail(k, "demo@example.test", user="nobody", input=b"Subject: while down 2\n\nhi\n")
    drop = os.path.join(k.dir, "var", "spool", "maildrop")
    assert len([n for n in os.listdir(drop) if not n.startswith(".")]) == 2
    assert k.maildir_new("demo@example.test") == []
    k.start()
    files = k.wait_mail("demo@example.test", count=2)
    subjects = sorted(headers(read(f)).split(b"Subject: ")[1].split(b"\n")[0] for f in files)
    assert subjects == [b"while down", b"while down 2"]
    assert [n for n in os.listdir(drop) if not n.startswith(".")] == []


@pytest.mark.parametrize("args", [
    ["not an address"],
    ["demo@example.test", "a@b@c"],
    ["<broken"],
])
def test_invalid_recipient(k, args):
    r = sendmail(k, *args, input=b"Subject: bad\n\nbody\n", check=False)
    assert r.returncode != 0
    assert r.stderr.strip(), "no message"
    drop = os.path.join(k.dir, "var", "spool", "maildrop")
    assert [n for n in os.listdir(drop) if not n.startswith(".")] == []


def test_no_recipient(k):
    r = sendmail(k, input=b"Subject: nobody\n\nbody\n", check=False)
    assert r.returncode != 0 and r.stderr.strip()
    r = sendmail(k, "-t", input=b"Subject: no To\n\nbody\n", check=False)
    assert r.returncode != 0 and r.stderr.strip()


def test_unknown_local_user_is_logged_as_bounced(k):
    # syntactically fine, so sendmail accepts it (as Postfix's does); the daemon
    # cannot deliver it and says so in the log; the other recipient gets its copy
    sendmail(k, "ghost@example.test", "demo@example.test", input=b"Subject: g\n\nb\n")
    k.wait_mail("demo@example.test")
    k.wait_log("to=<ghost@example.test>")
    assert re.search(r"to=<ghost@example.test>, relay=local, .*dsn=5\.1\.1, "
                     r"status=bounced \(no such mailbox\)", k.log()), k.log()[-2000:]


def test_message_too_big(kurier_factory):
    k = kurier_factory(limits={"message_size": "10K"})
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test")
    k.start()
    r = sendmail(k, "demo@example.test", input=b"Subject: big\n\n" + b"x" * 70000 + b"\n",
                 check=False)
    assert r.returncode != 0
    assert b"too big" in r.stderr
    sendmail(k, "demo@example.test", input=b"Subject: small\n\nbody\n")
    body = read(k.wait_mail("demo@example.test")[0])
    assert b"Subject: small" in body


def test_spool_missing_is_a_temporary_failure(kurier_factory):
    # kurierd never ran, so there is no maildrop yet: the caller must hear a
    # temporary failure (EX_TEMPFAIL) it can retry, never a silent success
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test")
    r = sendmail(k, "demo@example.test", input=b"Subject: early\n\nbody\n", check=False)
    assert r.returncode == 75, r
    assert b"maildrop" in r.stderr


# --- bare CR and maildrop envelopes (issue 9 item 9) ---------------------------------


class Capture:
    """aiosmtpd handler keeping each message's bytes as they came over the wire
    (only the dot-stuffing undone)."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content)
        return "250 2.0.0 Ok: captured"


@pytest.fixture
def relayed(kurier_factory):
    """A kurierd sending all remote mail to an aiosmtpd receiver on loopback
    (relay_host); yields (kurier, Capture)."""
    from aiosmtpd.controller import Controller
    port = free_port()
    cap = Capture()
    ctl = Controller(cap, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        k = kurier_factory(extra="relay_host 127.0.0.1:%d;\n" % port)
        k.add_domain("example.test")
        k.add_mailbox("demo@example.test")
        k.start()
        yield k, cap
    finally:
        ctl.stop()


def wait_captured(k, cap, timeout=30.0):
    deadline = time.time() + timeout
    while not cap.messages:
        assert time.time() < deadline, k.log()[-3000:]
        time.sleep(0.05)
    return cap.messages[0]


BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def test_bare_cr_from_sendmail_never_reaches_the_next_hop(relayed):
    """A bare CR ends a line as LF does: "\r.\r\n" must not go out as a bare CR
    before a dot (end of data for some servers), and nothing after it is lost."""
    k, cap = relayed
    sendmail(k, "-i", "someone@remote.test",
             input=b"Subject: cr\n\nfirst\r.\r\nsecond\rthird\r\r\nlast\n")
    data = wait_captured(k, cap)
    assert BARE.search(data) is None, data
    assert data.endswith(b"\r\n\r\nfirst\r\n.\r\nsecond\r\nthird\r\n\r\nlast\r\n"), data


def drop_file(k, text, name="0TESTDROP1.0123456789abcdef"):
    """Write a maildrop file by hand, as any local user could without sendmail."""
    path = os.path.join(k.dir, "var", "spool", "maildrop", name)
    tmp = os.path.join(os.path.dirname(path), ".tmp-" + name)
    with open(tmp, "wb") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    return path


def test_bare_cr_in_a_maildrop_file_is_made_crlf_at_pickup(relayed):
    k, cap = relayed
    drop_file(k, b"sender: <me@example.test>\nrcpt: <someone@remote.test>\n"
                 b"rcpt: <demo@example.test>\n\n"
                 b"Subject: hand made\r\n\r\nfirst\r.\r\nsecond\nthird\r")
    data = wait_captured(k, cap)
    assert BARE.search(data) is None, data
    assert data.endswith(b"\r\n\r\nfirst\r\n.\r\nsecond\r\nthird\r\n"), data
    # the spool holds CRLF lines: the Maildir copy (LF lines) has no CR left
    body = read(k.wait_mail("demo@example.test")[0])
    assert b"\r" not in body and body.endswith(b"\n\nfirst\n.\nsecond\nthird\n"), body


@pytest.mark.parametrize("envelope, what", [
    (b"sender: <me@example.test>\nrcpt: <demo@example.test>\nrcpt: <bad address@x.test>\n",
     "bad recipient address"),
    (b"sender: <me@example.test>\nrcpt: <demo@example.test>\nrcpt: <demo@example.test\r>\n",
     "bad recipient address"),
    (b"sender: <a@b@c.test>\nrcpt: <demo@example.test>\n", "bad sender address"),
    (b"sender: <me@example.test>\nrcpt: <@relay.test:demo@example.test>\n",
     "bad recipient address"),
])
def test_bad_maildrop_envelope_is_refused_and_logged(k, envelope, what):
    """Maildrop envelopes go through SMTP's address parser: a bad one is moved aside
    with a log line naming it, and nothing of the file is delivered."""
    path = drop_file(k, envelope + b"\nSubject: bad envelope\r\n\r\nbody\r\n")
    k.wait_log(what)
    name = os.path.basename(path)
    assert re.search(r"kurier/pickup\[\d+\]: error: bad maildrop file %s \(moved aside as \.bad-%s\)"
                     % (re.escape(name), re.escape(name)), k.log()), k.log()[-2000:]
    assert os.path.exists(os.path.join(os.path.dirname(path), ".bad-" + name))
    assert not os.path.exists(path)
    # a good message dropped after it is delivered, the bad one never
    sendmail(k, "demo@example.test", input=b"Subject: good\n\nbody\n")
    files = k.wait_mail("demo@example.test")
    assert len(files) == 1 and b"Subject: good" in read(files[0])
    assert "uid=0 from=<me@example.test>" not in k.log()
