#!/usr/bin/python3
"""DSNs as a sender's mail program and a bounce parser see them. The unit test
build/tests/test_dsn writes every DSN it builds (bounce, delay notice, success report,
English and German, RET=FULL) into $DSN_OUT; here each file is parsed by Python's email
package and checked field by field, and by Sisimai (an independent bounce classifier)
when it is installed. The daemon-level cases (bounce after a 5xx, delay notice, no DSN
to untrusted senders) follow once the scheduler queues DSNs."""

import os
import shutil
import subprocess
from email import message_from_bytes, policy

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("KURIER_BUILD") or os.path.join(ROOT, "build"))


@pytest.fixture(scope="module")
def dsn_dir(tmp_path_factory):
    binary = os.environ.get("TEST_DSN_BIN")  # a prebuilt test_dsn (optional)
    if not binary:
        rel = os.path.relpath(BUILD, ROOT)
        binary = os.path.join(BUILD, "tests", "test_dsn")
        args = ["make", "-s", "BUILD=" + rel]
        if os.path.basename(BUILD) == "build-asan":  # make's default name for that build
            args.append("SANITIZE=address,undefined")
        r = subprocess.run(args + [os.path.join(rel, "tests", "test_dsn")],
                           cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail("cannot build test_dsn:\n" + r.stdout + r.stderr)
    out = tmp_path_factory.mktemp("dsn")
    r = subprocess.run([binary], env=dict(os.environ, DSN_OUT=str(out)), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].endswith(" 0 failed"), r.stdout
    return out


def load(dsn_dir, name):
    with open(os.path.join(dsn_dir, name + ".eml"), "rb") as f:
        raw = f.read()
    return raw, message_from_bytes(raw, policy=policy.default)


def report(msg):
    """(per-message fields, [per-recipient fields]) of the delivery-status part."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert len(parts) == 3, [p.get_content_type() for p in parts]
    assert parts[0].get_content_type() == "text/plain"
    assert parts[0].get_content_charset() == "utf-8"
    assert parts[1].get_content_type() == "message/delivery-status"
    blocks = parts[1].get_payload()
    assert len(blocks) >= 2
    return parts, blocks[0], blocks[1:]


def by_rcpt(rcpts):
    return {str(b["Final-Recipient"]).split(";", 1)[1].strip(): b for b in rcpts}


def test_every_file_is_clean_mime(dsn_dir):
    names = sorted(os.listdir(dsn_dir))
    assert len(names) >= 8, names
    for n in names:
        with open(os.path.join(dsn_dir, n), "rb") as f:
            raw = f.read()
        assert b"\n" not in raw.replace(b"\r\n", b""), n + ": bare LF"
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998, n
        msg = message_from_bytes(raw, policy=policy.default)
        assert not msg.defects, (n, msg.defects)
        for part in msg.walk():
            assert not part.defects, (n, part.get_content_type(), part.defects)
        assert str(msg["From"]) == "Mail Delivery System <MAILER-DAEMON@mx.example.test>"
        assert str(msg["To"]) == "alice@example.test"
        assert str(msg["Auto-Submitted"]) == "auto-replied"
        assert msg["Message-ID"] and msg["Date"]
        report(msg)


def test_bounce_english(dsn_dir):
    _, msg = load(dsn_dir, "en-failed")
    assert str(msg["Subject"]) == "Undelivered Mail Returned to Sender"
    parts, per_msg, rcpts = report(msg)
    assert str(per_msg["Reporting-MTA"]) == "dns; mx.example.test"
    assert str(per_msg["Original-Envelope-Id"]) == "ENV-4711"
    assert per_msg["Arrival-Date"]
    r = by_rcpt(rcpts)
    assert len(r) == 8
    x = r["x@example.org"]
    assert str(x["Original-Recipient"]) == "rfc822; X@Example.org"
    assert str(x["Action"]) == "failed"
    assert str(x["Status"]) == "5.1.1"
    assert str(x["Remote-MTA"]) == "dns; mx.example.org"
    assert str(x["Diagnostic-Code"]) == "smtp; 550 5.1.1 <x@example.org>: unknown user"
    assert x["Last-Attempt-Date"] and x["Will-Retry-Until"] is None
    y = r["y@example.net"]
    assert str(y["Status"]) == "5.7.1"
    assert str(y["Remote-MTA"]) == "dns; mail.example.net"
    assert "barracudacentral.org" in str(y["Diagnostic-Code"])
    local = r["gone@example.test"]
    assert local["Remote-MTA"] is None
    assert str(local["Diagnostic-Code"]) == "X-Kurier; no such mailbox"
    assert str(r["q@null.example"]["Status"]) == "5.1.10"
    assert str(r["w@example.info"]["Status"]) == "5.4.7"
    assert all(str(b["Action"]) == "failed" for b in rcpts)

    text = parts[0].get_content().replace("\r\n", "\n")
    assert ("host mx.example.org[192.0.2.7] said: 550 5.1.1 <x@example.org>:\n"
            "    unknown user (in reply to RCPT TO command)") in text
    assert "(in reply to RCPT TO command)" in text
    assert "does not\n    exist" in text or "does not exist" in text
    assert "not your fault" in text and "blocklist" in text
    assert "for 5 days" in text

    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert "Subject: Angebot" in parts[2].get_content()
    assert "hier das Angebot" not in parts[2].get_content()


def test_bounce_german(dsn_dir):
    _, msg = load(dsn_dir, "de-failed")
    assert str(msg["Subject"]) == "Unzustellbare Nachricht"
    assert str(msg["Content-Language"]) == "de"
    parts, _, rcpts = report(msg)
    text = parts[0].get_content().replace("\r\n", "\n")
    assert text.startswith("Dies ist das Mailsystem von mx.example.test.")
    assert "kennt diese Adresse nicht" in text
    assert "Sperrliste" in text and "nicht Ihr Fehler" in text
    assert "größer" in text
    # the remote server's words are quoted as they were
    assert "host mx.example.org[192.0.2.7] said: 550 5.1.1" in text
    assert str(by_rcpt(rcpts)["x@example.org"]["Status"]) == "5.1.1"


def test_bounce_full_message(dsn_dir):
    _, msg = load(dsn_dir, "en-failed-full")
    parts, _, rcpts = report(msg)
    assert len(rcpts) == 1
    assert parts[2].get_content_type() == "message/rfc822"
    inner = parts[2].get_content()
    assert str(inner["Subject"]) == "Angebot"
    assert "hier das Angebot." in inner.get_content()


def test_delay_notice(dsn_dir):
    for name, subject, words in (
            ("en-delayed", "Delayed Mail (still being retried)", "we keep trying until"),
            ("de-delayed", "Verzögerte Zustellung (wird weiter versucht)",
             "Wir versuchen es weiter bis")):
        _, msg = load(dsn_dir, name)
        assert str(msg["Subject"]) == subject
        parts, _, rcpts = report(msg)
        r = by_rcpt(rcpts)
        z = r["z@example.com"]
        assert str(z["Action"]) == "delayed"
        assert str(z["Status"]) == "4.2.2"
        assert str(z["Remote-MTA"]) == "dns; mx.example.com"
        assert str(z["Diagnostic-Code"]) == "smtp; 452 4.2.2 <z@example.com>: mailbox full"
        assert z["Will-Retry-Until"] and z["Last-Attempt-Date"]
        assert words in parts[0].get_content().replace("\r\n", "\n")


def test_success_reports(dsn_dir):
    _, msg = load(dsn_dir, "en-delivered")
    assert str(msg["Subject"]) == "Successful Mail Delivery Report"
    _, _, rcpts = report(msg)
    b = by_rcpt(rcpts)["bob@example.test"]
    assert (str(b["Action"]), str(b["Status"])) == ("delivered", "2.0.0")
    _, msg = load(dsn_dir, "de-relayed")
    assert str(msg["Subject"]) == "Zustellbericht"
    _, _, rcpts = report(msg)
    b = by_rcpt(rcpts)["bob@example.test"]
    assert str(b["Action"]) == "relayed"
    assert str(b["Remote-MTA"]) == "dns; mx.example.org"


def sisimai_available():
    if not shutil.which("perl"):
        return False
    return subprocess.run(["perl", "-MSisimai", "-e", "1"], capture_output=True).returncode == 0


SISIMAI = r'''
for my $f (@ARGV) {
    for (@{Sisimai->make($f) || []}) {
        print join("|", $f, $_->recipient->address, $_->reason, $_->deliverystatus,
                   $_->action), "\n";
    }
}
'''


@pytest.mark.skipif(not sisimai_available(), reason="Sisimai (libsisimai-perl) not installed")
def test_sisimai_reads_our_bounces(dsn_dir):
    files = [os.path.join(dsn_dir, n + ".eml") for n in ("en-failed", "de-failed", "en-delayed")]
    r = subprocess.run(["perl", "-MSisimai", "-e", SISIMAI] + files, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = {}
    for line in r.stdout.splitlines():
        f, addr, reason, status, action = line.split("|")
        got[(os.path.basename(f), addr)] = (reason, status, action)
    for f in ("en-failed.eml", "de-failed.eml"):
        assert got[(f, "x@example.org")] == ("userunknown", "5.1.1", "failed"), got
        assert got[(f, "y@example.net")][0] == "blocked", got
        assert got[(f, "big@example.org")][0] == "mesgtoobig", got
    assert got[("en-delayed.eml", "z@example.com")][:2] == ("mailboxfull", "4.2.2"), got
