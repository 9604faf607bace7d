#!/usr/bin/python3
"""SPF as a check of the policy pipeline (docs/inbound.md "SPF at MAIL FROM"): the
real kurierd with `checks spf`, its resolver pointed at the loopback DNS server of
the SPF suite (spfdns.py) serving a few sender domains; clients connect from chosen
127.0.0.x addresses. What a user sees: the replies per configured action, the
Received-SPF: and Authentication-Results: headers of the delivered file as Python's
email package reads them, a forged Authentication-Results: with our name removed,
the one log line per message, and a hang-up during the lookup (ASan build)."""

import email
import email.policy
import smtplib
import socket
import time

import pytest

from conftest import SAFETY, free_port
import spfdns

HOST = "mx.example.test"  # the fixture's hostname: our authserv-id

ZONE = {
    # 127.0.0.1 and 127.0.0.7 may send for pass.test
    "pass.test": [{"TXT": "v=spf1 ip4:127.0.0.1 ip4:127.0.0.7 -all"}],
    "fail.test": [{"TXT": "v=spf1 ip4:192.0.2.1 -all exp=why.fail.test"}],
    "why.fail.test": [{"TXT": "%{i} is not one of %{d}'s designated mail servers"}],
    "soft.test": [{"TXT": "v=spf1 ip4:192.0.2.1 ~all"}],
    "broken.test": [{"TXT": "v=spf1 ip4:192.0.2.1 bogus:thing -all"}],
    "helo.test": [{"TXT": "v=spf1 a:helo.test -all"}, {"A": "127.0.0.1"}],
    # the client 127.0.0.7 has a forward-confirmed name (iprev)
    "7.0.0.127.in-addr.arpa": [{"PTR": "good.clients.test"}],
    "good.clients.test": [{"A": "127.0.0.7"}],
}


@pytest.fixture(scope="module")
def dns():
    with spfdns.serving(ZONE) as srv:
        yield srv


def start(kurier_factory, dns, listen="", **kw):
    k = kurier_factory(listen_extra="    checks spf;\n" + listen,
                       extra="resolver 127.0.0.1@%d;\n" % dns.port, **kw)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    return k


MSG = b"From: a@pass.test\r\nSubject: t\r\n\r\nhello\r\n"


def send(k, sender, source="127.0.0.1", helo="client.example", msg=MSG, port=None):
    """MAIL, RCPT, DATA from source: (stage, code, text) of the first refusal, or
    ("queued", 250, text)."""
    with smtplib.SMTP("127.0.0.1", port or k.port, source_address=(source, 0),
                      timeout=SAFETY) as s:
        s.ehlo(helo)
        code, text = s.mail(sender)
        if code != 250:
            return "MAIL", code, text.decode(errors="replace")
        code, text = s.rcpt("demo@example.test")
        if code != 250:
            return "RCPT", code, text.decode(errors="replace")
        code, text = s.data(msg)
        return ("queued" if code == 250 else "DATA"), code, text.decode(errors="replace")


def delivered(k, n=1):
    path = k.wait_mail("demo@example.test", n)[n - 1]
    with open(path, "rb") as f:
        return email.message_from_binary_file(f, policy=email.policy.default)


def message_lines(k, addr, n=1):
    """The one log line per message (it comes when the transaction ends: for a
    refused one, once the client left)."""
    deadline = time.time() + SAFETY
    while True:
        lines = [l for l in k.log().splitlines()
                 if "/policy[" in l and " checks=" in l and "[%s]" % addr in l]
        if len(lines) >= n or time.time() > deadline:
            assert len(lines) >= n, k.log()[-3000:]
            return lines
        time.sleep(0.05)


def message_line(k, addr):
    return message_lines(k, addr)[-1]


def test_pass_headers_and_log_line(kurier_factory, dns):
    k = start(kurier_factory, dns)
    stage, code, text = send(k, "alice@pass.test")
    assert (stage, code) == ("queued", 250), text
    qid = text.split()[-1]
    m = delivered(k)
    # our fields, in order, after the delivery's Return-Path: and Delivered-To:
    names = [n.lower() for n in m.keys()]
    assert names[2:6] == ["received", "received-spf", "authentication-results", "from"], names
    spf = str(m["Received-SPF"])
    assert spf.startswith("pass (%s: " % HOST), spf
    for kv in ("receiver=%s;" % HOST, "client-ip=127.0.0.1;",
               'envelope-from="alice@pass.test";', 'helo="client.example";',
               "identity=mailfrom"):
        assert kv in spf, spf
    ar = m.get_all("Authentication-Results")
    assert len(ar) == 1, ar
    ar = " ".join(str(ar[0]).split())
    assert ar.startswith(HOST + "; spf=pass ("), ar
    assert "smtp.mailfrom=alice@pass.test" in ar, ar
    assert "iprev" not in ar  # reverse_dns off: the client's name was not looked up
    line = message_line(k, "127.0.0.1")
    # queue ID first, as Postfix's message lines
    assert ("]: %s: peer=unknown[127.0.0.1] from=<alice@pass.test> checks=" % qid) in line, line
    assert "spf:pass" in line and line.endswith(" score=0 action=accept"), line


def test_fail_scores_by_default_and_is_delivered(kurier_factory, dns):
    # default: spf_fail 8, below reject_score 10: the mail goes through, marked
    k = start(kurier_factory, dns)
    stage, code, text = send(k, "bob@fail.test")
    assert (stage, code) == ("queued", 250), text
    m = delivered(k)
    assert str(m["Received-SPF"]).startswith(
        "fail (%s: 127.0.0.1 is not one of fail.test's designated mail servers)" % HOST)
    assert "spf=fail" in str(m["Authentication-Results"])
    line = message_line(k, "127.0.0.1")
    assert "spf:fail/score8" in line and "score=8 action=accept" in line, line
    # the MAIL stage's line tells the score too
    assert any("MAIL from unknown[127.0.0.1]: spf=+8 (fail bob@fail.test" in l
               for l in k.log().splitlines()), k.log()[-3000:]


def test_fail_rejected_with_the_explanation(kurier_factory, dns):
    k = start(kurier_factory, dns, listen="    spf_fail reject;\n")
    stage, code, text = send(k, "bob@fail.test")
    assert (stage, code) == ("MAIL", 550), text
    assert text == ("5.7.23 SPF fail for bob@fail.test from [127.0.0.1]: 127.0.0.1 is not "
                    "one of fail.test's designated mail servers"), text
    assert "NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 550 5.7.23" in k.log()
    line = message_line(k, "127.0.0.1")
    assert "NOQUEUE: peer=unknown[127.0.0.1] from=<bob@fail.test>" in line, line
    assert "spf:fail" in line and line.endswith("action=reject"), line
    # a passing sender on the same listener is still fine
    assert send(k, "alice@pass.test")[:2] == ("queued", 250)


def test_softfail_actions(kurier_factory, dns):
    k = start(kurier_factory, dns)
    assert send(k, "carol@soft.test")[:2] == ("queued", 250)
    assert str(delivered(k)["Received-SPF"]).startswith("softfail ")
    assert "spf:softfail/score2" in message_line(k, "127.0.0.1")
    k.stop()
    k2 = start(kurier_factory, dns, listen="    spf_softfail tempfail;\n")
    stage, code, text = send(k2, "carol@soft.test")
    assert (stage, code) == ("MAIL", 451), text
    assert text.startswith("4.7.23 SPF softfail for carol@soft.test"), text
    assert message_line(k2, "127.0.0.1").endswith("action=tempfail")


def test_permerror_scores_and_rejects_when_configured(kurier_factory, dns):
    k = start(kurier_factory, dns, listen="    spf_permerror reject;\n")
    stage, code, text = send(k, "dan@broken.test")
    assert (stage, code) == ("MAIL", 550), text
    assert text.startswith("5.7.24 SPF permerror for dan@broken.test"), text


def test_score_carried_to_rcpt_greylists(kurier_factory, dns):
    """The MAIL stage's SPF score counts at RCPT: with greylist_score 5, a fail
    weighing 6 is greylisted by triplet (not refused at MAIL)."""
    k = start(kurier_factory, dns, listen="    spf_fail 6;\n    greylist_score 5;\n")
    stage, code, text = send(k, "bob@fail.test")
    assert (stage, code) == ("RCPT", 451), text
    assert text.startswith("4.7.1 Greylisted, try again in "), text
    line = message_line(k, "127.0.0.1")
    assert "spf:fail/score6" in line and "greylist:greylist" in line, line
    assert line.endswith("score=6 action=greylist"), line


def test_null_sender_checks_helo(kurier_factory, dns):
    k = start(kurier_factory, dns)
    stage, code, text = send(k, "<>", helo="helo.test")
    assert (stage, code) == ("queued", 250), text
    m = delivered(k)
    spf = str(m["Received-SPF"])
    assert spf.startswith("pass ") and "identity=helo" in spf and 'envelope-from=""' in spf, spf
    assert "smtp.helo=helo.test" in str(m["Authentication-Results"])


def test_iprev_in_authentication_results(kurier_factory, dns):
    k = start(kurier_factory, dns, reverse_dns=True)
    assert send(k, "alice@pass.test", source="127.0.0.7")[:2] == ("queued", 250)
    ar = " ".join(str(delivered(k)["Authentication-Results"]).split())
    assert "spf=pass" in ar and "iprev=pass (good.clients.test) policy.iprev=127.0.0.7" in ar, ar


def test_forged_authentication_results_removed(kurier_factory, dns):
    k = start(kurier_factory, dns)
    forged = (b"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=ceo@bank.test\r\n"
              b"Authentication-Results: (ours, really)\r\n MX.EXAMPLE.TEST;\r\n dkim=pass\r\n"
              b"Authentication-Results: \"mx.example.test\"; dmarc=pass\r\n"
              b"Authentication-Results: relay.other.test; dkim=pass header.d=other.test\r\n"
              b"From: a@pass.test\r\nSubject: forged\r\n\r\nhello\r\n")
    assert send(k, "alice@pass.test", msg=forged)[:2] == ("queued", 250)
    m = delivered(k)
    ar = [" ".join(str(v).split()) for v in m.get_all("Authentication-Results")]
    assert len(ar) == 2, ar
    assert ar[0].startswith(HOST + "; spf=pass"), ar
    assert ar[1] == "relay.other.test; dkim=pass header.d=other.test", ar
    assert "ceo@bank.test" not in m.as_string()
    assert m["Subject"] == "forged"
    assert "removed 3 Authentication-Results fields claiming mx.example.test" in k.log()


def test_authenticated_client_is_not_judged(kurier_factory, dns):
    sub = free_port()
    k = kurier_factory(listen_extra="    checks spf;\n    spf_fail reject;\n",
                       extra="resolver 127.0.0.1@%d;\n"
                             "listen 127.0.0.1:%d {\n    role submission;\n"
                             "    auth_plaintext on;\n    checks spf;\n"
                             "    spf_fail reject;\n}\n" % (dns.port, sub))
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    with smtplib.SMTP("127.0.0.1", sub, timeout=SAFETY) as s:
        s.ehlo("client.example")
        s.login("demo@example.test", "demo")
        s.sendmail("demo@example.test", ["demo@example.test"],
                   b"From: demo@example.test\r\nSubject: sub\r\n\r\nhi\r\n")
    m = delivered(k)
    assert m["Received-SPF"] is None and m["Authentication-Results"] is None, m.keys()
    line = message_line(k, "127.0.0.1")
    assert "spf:" not in line and "action=accept" in line, line


def test_hang_up_during_the_spf_lookup(kurier_factory, dns_hole):
    """The resolver never answers: the session waits on the SPF record's query at
    MAIL; the client hangs up; the session, its check and its query are freed (ASan
    build: no use after free, no leak at exit)."""
    k = kurier_factory(listen_extra="    checks spf;\n",
                       extra="resolver 127.0.0.1@%d;\n" % dns_hole.port)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    for n in range(3):
        c = socket.create_connection(("127.0.0.1", k.port), timeout=SAFETY)
        c.sendall(b"EHLO client.example\r\nMAIL FROM:<a@slow%d.test>\r\n" % n)
        # the TXT query for slowN.test reached the resolver: the lookup is pending
        dns_hole.wait_query(b"\x05slow%d\x04test" % n)
        c.close()
    # (the start-up probe of the port is one more disconnect, with commands=0)
    log = k.wait_log_count("disconnect from unknown[127.0.0.1] ehlo=1 mail=1 commands=2", 3)
    assert "spf=" not in log  # no verdict ever came
    # each transaction still got its line: given up, SPF never answered
    lines = message_lines(k, "127.0.0.1", 3)
    assert len(lines) == 3 and all(l.endswith("score=0 action=none") for l in lines), lines
    k.stop_clean()


def test_config_values_and_errors(kurier_factory, tmp_path):
    k = kurier_factory(listen_extra="    checks spf;\n    spf_fail reject;\n"
                                    "    spf_temperror tempfail;\n    spf_softfail -3;\n")
    out = k.cli("config", "dump").stdout.decode()
    for kv in ("spf_fail reject;", "spf_temperror tempfail;", "spf_softfail -3;",
               "spf_permerror 2;"):
        assert kv in out, out
    bad = tmp_path / "bad.conf"
    bad.write_text("listen 127.0.0.1:2525 {\n    spf_fail maybe;\n    spf_softfail 5000;\n}\n")
    err = k.config_check_fails(bad)
    assert 'invalid value "maybe" for "spf_fail": expected reject, tempfail or a score' in err, err
    assert '"spf_softfail" is out of range (-1000 to 1000)' in err, err
