#!/usr/bin/python3
"""DNS lists at the door (issue 11 items 1 and 2): a real rbldnsd serves test DNSBL,
DNSWL and RHSBL zones on loopback, kurierd asks it, and clients connect from chosen
127.0.0.x source addresses so that one is listed and another is not. Per-code
weights add up against the listener's reject_score and greylist_score; "query
refused" codes are never a listing; an authenticated client from a listed address
still submits. A hang-up while a lookup is pending is run under the ASan build."""

import re
import smtplib
import socket

import pytest

from conftest import KURIER, SAFETY, free_port
from peers import rbldnsd

BL_ZONE = """$SOA 60 bl.test. hostmaster.bl.test. 1 600 60 3600 60
$NS 60 ns.bl.test.
:127.0.0.2:Listed in bl.test, see https://bl.test/lookup?ip=$
127.0.0.9
127.0.0.13
127.0.0.12 :127.0.0.3:Listed weakly in bl.test
127.0.0.14 :127.255.255.254:Query refused: open resolver
127.0.0.15 :192.0.2.1:Wildcard junk
"""
WL_ZONE = """$SOA 60 wl.test. hostmaster.wl.test. 1 600 60 3600 60
$NS 60 ns.wl.test.
:127.0.10.2:Allowlisted
127.0.0.13
"""
BL6_ZONE = """$SOA 60 bl6.test. hostmaster.bl6.test. 1 600 60 3600 60
$NS 60 ns.bl6.test.
:127.0.0.2:Listed in bl6.test: $
::1
"""
DBL_ZONE = """$SOA 60 dbl.test. hostmaster.dbl.test. 1 600 60 3600 60
$NS 60 ns.dbl.test.
:127.0.1.2:Domain listed: $
bad.example
.spammy.example
"""

SITES = ("    dnsbl_sites bl.test=127.0.0.2*10 bl.test=127.0.0.3*5;\n"
         "    dnsbl_sites wl.test=127.0.[0..255].[1..3]*-10;\n"
         "    rhsbl_sites dbl.test=127.0.1.2*10;\n"
         "    reject_score 10;\n"
         "    greylist_score 5;\n")


@pytest.fixture(scope="module")
def lists():
    with rbldnsd({"bl.test": ("ip4set", BL_ZONE), "wl.test": ("ip4set", WL_ZONE),
                  "bl6.test": ("ip6trie", BL6_ZONE), "dbl.test": ("dnset", DBL_ZONE)},
                 "bl.test") as addr:
        yield addr


@pytest.fixture
def k(kurier_factory, lists):
    sub = free_port()
    k = kurier_factory(listen_extra=SITES,
                       extra="resolver %s;\n"
                             "listen 127.0.0.1:%d {\n    role submission;\n"
                             "    auth_plaintext on;\n%s}\n" % (lists, sub, SITES))
    k.sub_port = sub
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    yield k


def send(port, source, sender="a@sender.test", helo="client.example", login=None):
    """MAIL and RCPT from source; returns (code, text) of RCPT (or of MAIL when that
    failed); completes the message when RCPT was taken."""
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=SAFETY) as s:
        s.ehlo(helo)
        if login:
            s.login(*login)
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode(errors="replace")
        code, text = s.rcpt("demo@example.test")
        if code == 250:
            s.data(b"Subject: t\r\n\r\nhello\r\n")
        return code, text.decode(errors="replace")


def policy_lines(k, addr):
    """The stage lines (not the one line per message, which says checks=)."""
    return [l for l in k.log().splitlines()
            if "/policy" in l and "[%s]" % addr in l and " checks=" not in l]


def test_listed_client_refused_with_the_lists_text(k):
    code, text = send(k.port, "127.0.0.9")
    assert code == 554, text
    assert text == ("5.7.1 Service unavailable; client [127.0.0.9] blocked using bl.test; "
                    "Listed in bl.test, see https://bl.test/lookup?ip=127.0.0.9"), text
    assert "NOQUEUE: reject: RCPT from unknown[127.0.0.9]: 554 5.7.1" in k.log()
    # one line tells each check's result and the sum
    line = policy_lines(k, "127.0.0.9")[-1]
    assert "dnsbl=+10 (127.0.0.9 bl.test=127.0.0.2*10)" in line, line
    assert "score=10" in line and "result=reject by dnsbl" in line, line
    assert "rhsbl" not in line  # the reject score was reached: later checks did not run
    assert k.maildir_new("demo@example.test") == []


def test_unlisted_client_accepted(k):
    code, text = send(k.port, "127.0.0.20")
    assert code == 250, text
    k.wait_mail("demo@example.test", 1)
    line = policy_lines(k, "127.0.0.20")[-1]
    assert "dnsbl=+0" in line and "score=0" in line and "result=pass" in line, line


def test_weight_per_code_against_the_thresholds(k):
    # code 127.0.0.3 weighs 5: below reject_score 10, at greylist_score 5. Greylisting
    # (mode suspicious, the default) runs last and greylists the triplet, so the
    # client gets through when it retries after the delay (docs/inbound.md)
    code, text = send(k.port, "127.0.0.12")
    assert code == 451, text
    assert text.startswith("4.7.1 Greylisted, try again in "), text
    assert "score=5" in policy_lines(k, "127.0.0.12")[-1]


def test_dnswl_offsets_a_listing(k):
    # listed with 127.0.0.2 (+10) and allowlisted with 127.0.10.2 (-10)
    code, text = send(k.port, "127.0.0.13")
    assert code == 250, text
    k.wait_mail("demo@example.test", 1)
    line = policy_lines(k, "127.0.0.13")[-1]
    assert "wl.test=127.0.10.2*-10" in line and "score=0" in line, line


@pytest.mark.parametrize("source,answer", [("127.0.0.14", "127.255.255.254"),
                                           ("127.0.0.15", "192.0.2.1")])
def test_refusal_codes_are_never_a_listing(k, source, answer):
    code, text = send(k.port, source)
    assert code == 250, text
    k.wait_mail("demo@example.test", 1)
    assert ("dnsbl: bl.test answered %s for %s: not a listing code" % (answer, source)
            in k.log()), k.log()[-2000:]


def test_rhsbl_on_the_sender_domain(k):
    code, text = send(k.port, "127.0.0.20", sender="x@bad.example")
    assert code == 554, text
    assert text == ("5.7.1 Service unavailable; sender domain bad.example blocked using "
                    "dbl.test; Domain listed: bad.example"), text
    # the HELO name is looked up too
    code, text = send(k.port, "127.0.0.20", helo="mail.spammy.example")
    assert code == 554 and "helo name mail.spammy.example blocked using dbl.test" in text, text


def test_authenticated_client_from_a_listed_address_submits(k):
    # the same address is refused on the MX port ...
    code, text = send(k.port, "127.0.0.9")
    assert code == 554, text
    # ... and submits on the submission port once logged in
    code, text = send(k.sub_port, "127.0.0.9", sender="demo@example.test",
                      login=("demo@example.test", "demo"))
    assert code == 250, text
    k.wait_mail("demo@example.test", 1)


def test_ipv6_client_looked_up_by_nibbles(kurier_factory, lists):
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    k = kurier_factory(extra="resolver %s;\nlisten [::1]:%d {\n"
                             "    dnsbl_sites bl6.test*10;\n}\n" % (lists, port))
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    with smtplib.SMTP("::1", port, timeout=SAFETY) as s:
        s.ehlo("client.example")
        s.mail("a@sender.test")
        code, text = s.rcpt("demo@example.test")
    assert code == 554, text
    assert text.decode() == ("5.7.1 Service unavailable; client [::1] blocked using bl6.test; "
                             "Listed in bl6.test: ::1"), text


def test_hang_up_during_the_lookup(kurier_factory, dns_hole):
    """The resolver never answers: the session waits on its DNSBL query; the client
    hangs up; the session and its pending query are freed (ASan build: no use after
    free, no leak at exit)."""
    k = kurier_factory(listen_extra=SITES,
                       extra="resolver 127.0.0.1@%d;\n" % dns_hole.port)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    for n in range(3):
        c = socket.create_connection(("127.0.0.1", k.port), timeout=SAFETY,
                                     source_address=("127.0.0.9", 0))
        c.sendall(b"EHLO client.example\r\nMAIL FROM:<a@sender.test>\r\n"
                  b"RCPT TO:<demo@example.test>\r\n")
        # the query for 9.0.0.127.bl.test reached the resolver: the lookup is pending
        dns_hole.wait_query(b"\x01\x39\x01\x30\x01\x30\x03\x31\x32\x37\x02\x62\x6c")
        c.close()
    log = k.wait_log_count("disconnect from unknown[127.0.0.9]", 3)
    assert "result=" not in log  # no verdict ever came
    k.stop_clean()


def test_config_errors_and_dump(kurier_factory, tmp_path):
    k = kurier_factory()
    bad = tmp_path / "bad.conf"
    bad.write_text("listen 127.0.0.1:2525 {\n    checks dnsbl greylisting;\n"
                   "    dnsbl_sites zen.example=127.0.0.[2..1]*3;\n"
                   "    rhsbl_sites dbl.example*x;\n}\n")
    err = k.config_check_fails(bad)
    assert ('bad.conf:2:5: invalid value "greylisting" for "checks": expected one of '
            'dnsbl|rhsbl|') in err, err
    assert "bad.conf:3:5: invalid filter in DNS list \"zen.example=127.0.0.[2..1]*3\"" in err, err
    assert "bad.conf:4:5: invalid weight in DNS list \"dbl.example*x\"" in err, err
    good = tmp_path / "good.conf"
    good.write_text("listen 127.0.0.1:2525 {\n    checks rhsbl dnsbl;\n"
                    "    dnsbl_sites zen.example=127.0.0.[2..11]*3;\n"
                    "    dnsbl_sites wl.example*-5;\n    reject_score 7;\n}\n")
    out = k.cli("-c", str(good), "config", "dump", prog=KURIER).stdout.decode()
    assert "checks rhsbl dnsbl;" in out, out
    assert "dnsbl_sites zen.example=127.0.0.[2..11]*3 wl.example*-5;" in out, out
    assert "reject_score 7;" in out and "greylist_score 0;" in out, out


def test_check_client_prints_each_checks_verdict(k):
    r = k.cli("check-client", "127.0.0.9", "--helo", "client.example", "--from",
              "a@sender.test", "--to", "demo@example.test", check=False)
    out = r.stdout.decode()
    assert r.returncode == 1, out + r.stderr.decode()
    assert "client [127.0.0.9] on listen 127.0.0.1:%d" % k.port in out, out
    assert "recipient    pass" in out, out
    assert "dnsbl        score +10 (127.0.0.9 bl.test=127.0.0.2*10)" in out, out
    assert ("=> reject: 554 5.7.1 Service unavailable; client [127.0.0.9] blocked using "
            "bl.test; Listed in bl.test, see https://bl.test/lookup?ip=127.0.0.9 (score 10, "
            "reject_score 10, greylist_score 5)") in out, out
    assert out.rstrip().endswith("refused"), out
    # an allowlisted listing, and a listed sender domain, on another listener
    r = k.cli("check-client", "127.0.0.13", "--to", "demo@example.test", check=False)
    out = r.stdout.decode()
    assert r.returncode == 0 and "wl.test=127.0.10.2*-10" in out, out
    assert out.rstrip().endswith("accepted"), out
    r = k.cli("check-client", "127.0.0.20", "--from", "x@bad.example", "--to",
              "demo@example.test", "--listen",
              "127.0.0.1:%d" % k.sub_port, check=False)
    out = r.stdout.decode()
    assert r.returncode == 1 and "rhsbl        score +10" in out, out
    assert "sender domain bad.example blocked using dbl.test" in out, out
    r = k.cli("check-client", "not-an-ip", check=False)
    assert r.returncode == 1 and b"invalid client address" in r.stderr, r.stderr


def test_no_lists_no_queries_no_log_line(kurier_factory):
    """The default checks (dnsbl rhsbl) without any list ask nothing and log nothing."""
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    code, text = send(k.port, "127.0.0.9")
    assert code == 250, text
    k.wait_mail("demo@example.test", 1)
    # only the message's own line (every message has one), no stage line
    lines = [l for l in k.log().splitlines() if "/policy[" in l]
    assert len(lines) == 1 and " checks=" in lines[0], lines


def test_checks_with_nothing_to_do_are_not_run(kurier_factory):
    """A check without lists (or BATV, verification) for the recipient is not started:
    check-client lists only the checks that ran (the recipient check always does)."""
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    r = k.cli("check-client", "127.0.0.9", "--from", "a@sender.test", "--to",
              "demo@example.test", check=False)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "recipient    pass" in out, out
    for name in ("dnsbl", "rhsbl", "batv", "sender_verify", "relay_verify", "sender_login"):
        assert not re.search(r"^\s+%s\s" % name, out, re.M), out
    assert out.rstrip().endswith("accepted"), out
