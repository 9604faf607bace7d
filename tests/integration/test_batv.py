#!/usr/bin/python3
"""BATV backscatter filter (issue 11 item 7, docs/inbound.md "BATV"): a user submits
mail to a remote receiver (Postfix's smtp-sink on another loopback address), which
sees MAIL FROM as prvs=KDDDSSSSSS=user@domain (checked here with Python's hmac, as
Exim's ${prvs} computes it); a real bounce to that address is accepted and lands in
the user's Maildir with the tag stripped; forged bounces (no tag, bad tag, expired
tag, unknown key) are refused with 550 5.7.1 at RCPT; a domain without BATV still
takes bounces; the key file's permissions and the settings are checked at start."""

import hashlib
import hmac
import os
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time

import pytest

import peers
from conftest import BUILD, KURIERD, SAFETY, Raw, for_user, free_port
from test_smtp_client import sink_files

KEYS = "# newest first: key 1 signs, both verify\n1 test-secret-one-0123456789\n" \
       "0 test-secret-zero-0123456789\n"
SECRETS = {"1": b"test-secret-one-0123456789", "0": b"test-secret-zero-0123456789"}
REFUSED = "550 5.7.1 Bounce rejected: we did not send the original message"


def prvs(addr, day, num="1", secret=None):
    """The tag Exim's ${prvs{addr}{secret}{num}} makes for expiry day `day`."""
    ddd = "%03d" % (day % 1000)
    h = hmac.new(secret or SECRETS[num], (num + ddd + addr).encode(), hashlib.sha1)
    return "prvs=%s%s%s=%s" % (num, ddd, h.hexdigest()[:6], addr)


def today():
    return int(time.time()) // 86400


def write_keys(d, text=KEYS, mode=0o600):
    path = os.path.join(d, "batv.keys")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def make(kurier_factory, sink_port, domains):
    """kurierd with BATV for domains, a submission listener (AUTH without TLS, on
    loopback) and every remote mail relayed to the sink on 127.0.0.61."""
    k = kurier_factory()
    keys = write_keys(k.dir)
    k.sub_port = free_port()
    with open(k.conf, "a") as f:
        f.write("relay_host 127.0.0.61:%d;\n" % sink_port)
        f.write("batv {\n    domains %s;\n    key_file %s;\n}\n" % (domains, keys))
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    auth_plaintext on;\n}\n"
                % k.sub_port)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.add_domain("plain.test")
    k.add_mailbox("bob@plain.test", "bob")
    k.cli("alias", "add", "postmaster@example.test", "demo@example.test")
    k.start()
    return k


@pytest.fixture
def sink():
    """smtp-sink on 127.0.0.61 (it writes as user postfix: a folder it can reach)."""
    d = tempfile.mkdtemp(prefix="kurier-batv-")
    os.chmod(d, 0o755)
    port = free_port("127.0.0.61")
    try:
        with peers.smtp_sink(os.path.join(d, "dump"), "127.0.0.61", port):
            yield port, os.path.join(d, "dump")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def submit(k, sender="demo@example.test", password="demo", rcpt="friend@remote.test"):
    with smtplib.SMTP("127.0.0.1", k.sub_port, timeout=SAFETY) as s:
        s.login(sender, password)
        s.sendmail(sender, [rcpt], "From: <%s>\r\nTo: <%s>\r\nSubject: hello\r\n\r\nhi\r\n"
                   % (sender, rcpt))


def mail_from_seen(dump, count):
    """The MAIL FROM addresses smtp-sink recorded (X-Mail-Args of each dump file)."""
    out = []
    for text in sink_files(dump, count):
        m = re.search(r"^X-Mail-Args: <([^>]*)>", text, re.M)
        assert m, text[:500]
        out.append(m.group(1))
    return out


def bounce(k, rcpt, sender=""):
    """Send a bounce (or, with sender, a reply) to rcpt on the MX port: (code, text)
    of RCPT, and of the end of DATA when RCPT was accepted."""
    r = Raw(k.port)
    try:
        assert r.reply()[0] == 220
        assert r.cmd("EHLO mx.remote.test")[0] == 250
        assert r.cmd("MAIL FROM:<%s>" % sender)[0] == 250
        rc = r.cmd("RCPT TO:<%s>" % rcpt)
        if rc[0] != 250:
            return rc, None
        assert r.cmd("DATA")[0] == 354
        r.send("From: MAILER-DAEMON@remote.test\r\nTo: <%s>\r\nSubject: Undelivered Mail\r\n"
               "\r\nThe original message could not be delivered.\r\n.\r\n" % rcpt)
        return rc, r.reply()
    finally:
        r.close()


def test_signed_sender_and_its_bounce_delivered(kurier_factory, sink):
    port, dump = sink
    k = make(kurier_factory, port, "example.test")
    submit(k)
    [mail_from] = mail_from_seen(dump, 1)
    m = re.fullmatch(r"prvs=1(\d{3})([0-9a-f]{6})=demo@example\.test", mail_from)
    assert m, mail_from
    # Exim's stamp: the day the tag expires (today + 7), modulo 1000
    assert int(m.group(1)) in ((today() + 7) % 1000, (today() + 8) % 1000), mail_from
    assert mail_from == prvs("demo@example.test", int(m.group(1))), "HMAC as Exim makes it"
    k.wait_queue_empty()
    # the spool and the log keep the real sender
    assert "from=<demo@example.test>" in k.log()
    assert "prvs=" not in k.log().split("status=sent")[0].split("from=<demo@example.test>")[-1]

    # the remote's bounce to the signed address comes home, without the tag
    rc, end = bounce(k, mail_from)
    assert rc[0] == 250, rc
    assert end[0] == 250, end
    [f] = k.wait_mail("demo@example.test")
    with open(f) as fh:
        text = fh.read()
    assert "Return-Path: <>" in text
    assert "Delivered-To: demo@example.test" in text
    assert "Delivered-To: prvs=" not in text
    assert "batv: <%s>: tag valid, taken as <demo@example.test>" % mail_from in k.log()
    # hex digits and the prefix in any case
    upper = "PRVS=" + mail_from[5:16].upper() + "demo@example.test"
    rc, end = bounce(k, upper)
    assert rc[0] == 250 and end[0] == 250, (rc, end)
    k.wait_mail("demo@example.test", 2)


def test_local_sendmail_signed_without_reading_the_keys(kurier_factory, sink):
    """A local user's sendmail needs no access to the key file (root's, mode 0600):
    only the daemon reads it; the pickup's mail leaves signed."""
    port, dump = sink
    k = make(kurier_factory, port, "example.test")
    argv = ["runuser", "-u", "nobody", "--", for_user(os.path.join(BUILD, "sendmail")),
            "-f", "demo@example.test", "friend@remote.test"]
    r = subprocess.run(argv, input=b"Subject: local\n\nhi\n", capture_output=True,
                       timeout=SAFETY, env=dict(os.environ, KURIER_CONF=k.conf))
    assert r.returncode == 0, r.stderr
    [mail_from] = mail_from_seen(dump, 1)
    assert re.fullmatch(r"prvs=1\d{3}[0-9a-f]{6}=demo@example\.test", mail_from), mail_from


def test_forged_bounces_refused(kurier_factory, sink):
    port, _ = sink
    k = make(kurier_factory, port, "example.test")
    d = today() + 7
    cases = {
        "demo@example.test": "no BATV signature",
        "prvs=1%03dabcdef=demo@example.test" % (d % 1000): "bad BATV signature",
        prvs("demo@example.test", today() - 1): "BATV signature expired",
        prvs("bob@example.test", d)[:16] + "demo@example.test": "bad BATV signature",
        prvs("demo@example.test", d, num="7", secret=b"x" * 20): "bad BATV signature",
    }
    for rcpt, why in cases.items():
        rc, _ = bounce(k, rcpt)
        assert rc[0] == 550, (rcpt, rc)
        assert rc[1] == "%s (%s)" % (REFUSED, why), (rcpt, rc)
    assert k.maildir_new("demo@example.test") == []
    # the old key still verifies (rotation); postmaster takes every bounce (RFC 5321
    # 4.5.1)
    rc, end = bounce(k, prvs("demo@example.test", d, num="0"))
    assert rc[0] == 250 and end[0] == 250, (rc, end)
    rc, end = bounce(k, "postmaster@example.test")
    assert rc[0] == 250 and end[0] == 250, (rc, end)
    # mail with a sender: untagged as always; tagged (even badly) taken as the user
    rc, end = bounce(k, "demo@example.test", sender="list-owner@remote.test")
    assert rc[0] == 250 and end[0] == 250, (rc, end)
    rc, end = bounce(k, "prvs=1%03dabcdef=demo@example.test" % (d % 1000),
                     sender="list-owner@remote.test")
    assert rc[0] == 250 and end[0] == 250, (rc, end)
    k.wait_mail("demo@example.test", 4)
    # a domain without BATV takes bounces as before
    rc, end = bounce(k, "bob@plain.test")
    assert rc[0] == 250 and end[0] == 250, (rc, end)
    k.wait_mail("bob@plain.test")
    assert k.proc.poll() is None


def test_domains_all_signs_and_filters_hosted_domains(kurier_factory, sink):
    """batv { domains all; }: every hosted domain; a client that hangs up while the
    check asks the directory cancels it (ASan build: no use after free)."""
    port, dump = sink
    k = make(kurier_factory, port, "all")
    submit(k, "bob@plain.test", "bob")
    [mail_from] = mail_from_seen(dump, 1)
    assert re.fullmatch(r"prvs=1\d{3}[0-9a-f]{6}=bob@plain\.test", mail_from), mail_from
    rc, _ = bounce(k, "bob@plain.test")
    assert rc[1].startswith(REFUSED), rc
    rc, end = bounce(k, mail_from)
    assert rc[0] == 250 and end[0] == 250, (rc, end)
    k.wait_mail("bob@plain.test")
    # hang up with the RCPT being judged, many times
    for i in range(20):
        r = Raw(k.port)
        r.reply()
        r.send("EHLO a.test\r\nMAIL FROM:<>\r\nRCPT TO:<%s>\r\n" % mail_from)
        r.close()
    rc, _ = bounce(k, "demo@example.test")
    assert rc[1].startswith(REFUSED), rc
    assert k.proc.poll() is None, k.log()[-3000:]
    assert "AddressSanitizer" not in k.log()


def test_settings_checked_at_start(kurier_factory, tmp_path):
    k = kurier_factory()
    keys = write_keys(k.dir, mode=0o644)
    base = open(k.conf).read()

    def check(batv):
        with open(k.conf, "w") as f:
            f.write(base + batv)
        return subprocess.run([KURIERD, "-t", "-c", k.conf], capture_output=True, text=True,
                              timeout=SAFETY)

    r = check("batv {\n    domains example.test;\n    key_file %s;\n}\n" % keys)
    assert r.returncode != 0
    assert "%s: BATV key file is readable or writable by others (mode 0644)" % keys in r.stderr
    os.chmod(keys, 0o600)
    assert check("batv {\n    domains example.test;\n    key_file %s;\n}\n" % keys).returncode == 0
    r = check("batv {\n    domains example.test;\n}\n")
    assert r.returncode != 0 and "\"domains\" needs \"key_file\"" in r.stderr
    write_keys(k.dir, "1 short\n")
    r = check("batv {\n    domains example.test;\n    key_file %s;\n}\n" % keys)
    assert r.returncode != 0 and "%s:1:" % keys in r.stderr and "has 5 bytes" in r.stderr
    write_keys(k.dir, KEYS)
    r = check("batv {\n    domains example.test;\n    key_file %s;\n    max_age 60d;\n}\n" % keys)
    assert r.returncode != 0 and "out of range" in r.stderr


def test_key_rotation_on_reload(kurier_factory, sink):
    """A new key first in the file and a reload: mail leaves signed with it, and
    bounces of mail signed with the old key still come home. The daemon reads the
    file on reload as user kurier, as an admin sets it up (chown kurier, mode 600);
    one readable by others is refused and the running keys stay."""
    port, dump = sink
    k = make(kurier_factory, port, "example.test")
    keys = os.path.join(k.dir, "batv.keys")
    shutil.chown(keys, "kurier", "kurier")
    submit(k)
    [old] = mail_from_seen(dump, 1)
    assert old.startswith("prvs=1"), old
    with open(keys, "w") as f:
        f.write("2 test-secret-two-0123456789\n" + KEYS)
    k.proc.send_signal(signal.SIGHUP)
    k.wait_log("reloaded configuration from")
    submit(k)
    new = [a for a in mail_from_seen(dump, 2) if a != old]
    assert len(new) == 1 and new[0] == prvs("demo@example.test", int(new[0][6:9]), num="2",
                                            secret=b"test-secret-two-0123456789"), new
    for tag in (old, new[0]):
        rc, end = bounce(k, tag)
        assert rc[0] == 250 and end[0] == 250, (tag, rc, end)
    k.wait_mail("demo@example.test", 2)
    # a key file others may read: the reload is refused, the keys in use stay
    os.chmod(keys, 0o644)
    k.proc.send_signal(signal.SIGHUP)
    k.wait_log("reload refused, keeping the running configuration: %s: BATV key file is "
               "readable or writable by others" % keys)
    rc, end = bounce(k, new[0])
    assert rc[0] == 250 and end[0] == 250, (rc, end)
