#!/usr/bin/python3
"""Relay domains (issue 11 item 5): kurier is the MX in front of a customer's own
server (`transport relay.test { relay HOST:PORT; relay_domain on; }`). Each recipient
is checked at RCPT with an SMTP probe at that server (peers.Downstream on another
loopback address, which knows its users and counts probes): a known recipient is
accepted and its mail delivered there; an unknown one gets 550 5.1.1 with the
server's words; answers are remembered (no second probe); a server that is down
gives 450 4.4.1; a client that hangs up while its probe runs cancels the probe (the
downstream sees the connection close; run under the ASan build); probes to one
server are limited to verify { concurrency }."""

import smtplib
import threading
import time

import pytest

import peers
from conftest import SAFETY, Raw, free_port

HOST = "127.0.0.61"  # the customer's server


def wait_for(pred, what, k=None, timeout=SAFETY):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("%s not reached%s" % (what, ("; log:\n" + k.log()[-3000:]) if k else ""))


@pytest.fixture
def relay(kurier_factory):
    """make(users, verify=None, extra="") -> (kurier, downstream): a kurierd that is
    MX for relay.test in front of a Downstream on HOST, and for down.test in front of
    a server that is not running."""
    made = []

    def make(users=("alice@relay.test",), verify=None, extra="", debug=False, listen_extra=""):
        port = free_port(HOST)
        ds = peers.Downstream(HOST, port, users)
        made.append(ds)
        v = {"timeout": "60s", "positive_ttl": "1h", "negative_ttl": "1h"}
        v.update(verify or {})
        vtext = "".join("    %s %s;\n" % kv for kv in v.items())
        k = kurier_factory(listen_extra=listen_extra, extra=(
            "transport relay.test {\n    relay %s:%d;\n    relay_domain on;\n    tls none;\n}\n"
            "transport down.test {\n    relay %s:%d;\n    relay_domain on;\n}\n"
            "verify {\n%s}\n%s" % (HOST, port, HOST, free_port(HOST), vtext, extra)))
        k.add_domain("example.test")
        if debug:  # the probes' traces (deliver/probe.c logs under "smtp")
            with open(k.conf) as f:
                text = f.read()
            with open(k.conf, "w") as f:
                f.write(text.replace("    level info;\n", "    level debug;\n    debug smtp;\n"))
        k.start()
        return k, ds

    yield make
    for ds in made:
        ds.stop()


def rcpt(k, addr, sender="someone@sender.test"):
    """(code, text) of RCPT TO:<addr> in a fresh session from an untrusted client."""
    r = Raw(k.port)
    try:
        assert r.reply()[0] == 220
        assert r.cmd("EHLO client.test")[0] == 250
        assert r.cmd("MAIL FROM:<%s>" % sender)[0] == 250
        return r.cmd("RCPT TO:<%s>" % addr)
    finally:
        r.close()


def test_known_recipient_is_accepted_and_delivered_downstream(relay):
    k, ds = relay()
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        s.sendmail("someone@sender.test", ["alice@relay.test"],
                   "From: someone@sender.test\r\nSubject: hello\r\n\r\nfor alice\r\n")
    assert ds.probe_count("alice@relay.test") == 1
    wait_for(lambda: ds.messages, "delivery downstream", k)
    sender, rcpts, data = ds.messages[0]
    assert sender == "someone@sender.test" and rcpts == ["alice@relay.test"]
    assert b"for alice" in data
    assert "probe to=<alice@relay.test> relay=%s[%s] result=accepted" % (
        HOST, HOST) in k.log()
    # the answer is remembered: the next message is not probed again
    assert rcpt(k, "alice@relay.test")[0] == 250
    assert ds.probe_count("alice@relay.test") == 1
    assert "to=<alice@relay.test> result=accepted (cached" in k.log()


def test_unknown_recipient_refused_at_rcpt_with_the_servers_words_and_cached(relay):
    k, ds = relay()
    code, text = rcpt(k, "nobody@relay.test")
    assert code == 550 and "5.1.1" in text, text
    assert "user unknown in the customer's directory" in text, text
    assert ds.probe_count("nobody@relay.test") == 1
    # the second attempt is answered from the cache: the downstream sees no probe
    code, text = rcpt(k, "Nobody@Relay.test")
    assert code == 550 and "5.1.1" in text and "user unknown" in text, text
    assert ds.probe_count("nobody@relay.test") == 1
    assert ds.probe_count() == 1
    # nothing was queued for it
    assert k.queue_empty()


def test_cache_survives_a_restart(relay):
    k, ds = relay()
    assert rcpt(k, "nobody@relay.test")[0] == 550
    k.stop()
    k.start()
    assert rcpt(k, "nobody@relay.test")[0] == 550
    assert ds.probe_count() == 1


def test_expired_answers_are_asked_again(relay):
    k, ds = relay(verify={"negative_ttl": "1s", "purge_interval": "1s"})
    assert rcpt(k, "nobody@relay.test")[0] == 550
    # expired after a second: probed again (and purged by the timer meanwhile)
    wait_for(lambda: rcpt(k, "nobody@relay.test")[0] == 550 and ds.probe_count() >= 2,
             "a second probe", k)


def test_downstream_down_is_a_temporary_failure(relay):
    k, ds = relay()
    code, text = rcpt(k, "bob@down.test")
    assert code == 450 and "4.4.1" in text, text
    assert "unverified address" in text, text
    # not remembered: asked again (and refused again) next time
    code2, _ = rcpt(k, "bob@down.test")
    assert code2 == 450
    assert k.log().count("probe to=<bob@down.test>") == 2, k.log()[-3000:]


def test_a_downstream_that_does_not_answer_is_a_temporary_failure(relay):
    """verify { timeout }: a probe the downstream leaves waiting ends with 450 4.4.1,
    its connection closed; nothing is remembered."""
    k, ds = relay(verify={"timeout": "2s"})
    ds.hold.set()
    code, text = rcpt(k, "slow@relay.test")
    assert code == 450 and "4.4.1" in text and "no answer within 2s" in text, text
    wait_for(lambda: ds.hangups == 1, "the probe's connection closed", k)
    ds.hold.clear()
    assert rcpt(k, "slow@relay.test")[0] == 550
    assert ds.probe_count("slow@relay.test") == 2
    assert k.stop() == 0
    assert "ERROR: AddressSanitizer" not in k.log() and "runtime error" not in k.log()


def test_domains_we_do_not_relay_for_are_still_refused(relay):
    k, ds = relay()
    code, text = rcpt(k, "x@elsewhere.test")
    assert code == 554 and "Relay access denied" in text, text
    assert ds.probe_count() == 0


def test_hangup_during_the_probe_cancels_it(relay):
    """The client goes while its probe waits for the downstream's RCPT answer: the
    probe's connection is closed at once, nothing is answered or remembered, and the
    daemon (ASan build) goes on."""
    k, ds = relay()
    ds.hold.set()
    r = Raw(k.port)
    assert r.reply()[0] == 220
    r.send("EHLO client.test\r\nMAIL FROM:<someone@sender.test>\r\nRCPT TO:<held@relay.test>\r\n")
    wait_for(lambda: ds.held == 1, "the probe at the downstream", k)
    r.close()
    wait_for(lambda: ds.hangups == 1, "the probe's connection closed", k)
    ds.hold.clear()
    assert "probe to=<held@relay.test>" not in k.log()
    # the same recipient later is probed anew (nothing was remembered) and answered
    code, text = rcpt(k, "held@relay.test")
    assert code == 550, text
    assert ds.probe_count("held@relay.test") == 2
    assert k.proc.poll() is None
    assert k.stop() == 0
    assert "ERROR: AddressSanitizer" not in k.log() and "runtime error" not in k.log()
    assert "ERROR: LeakSanitizer" not in k.log()


def test_probes_per_downstream_are_limited(relay):
    """verify { concurrency 1 }: a second probe to the same server waits for the
    first's slot, then is answered."""
    k, ds = relay(users=("a@relay.test", "b@relay.test"), verify={"concurrency": "1"},
                  debug=True)
    ds.hold.set()
    answers = {}

    def ask(addr):
        answers[addr] = rcpt(k, addr)

    threads = [threading.Thread(target=ask, args=(a,)) for a in ("a@relay.test", "b@relay.test")]
    for t in threads:
        t.start()
    wait_for(lambda: ds.held >= 1, "a probe at the downstream", k)
    wait_for(lambda: ": waiting for a slot to %s:" % HOST in k.log(), "the second probe waiting", k)
    assert ds.held == 1 and ds.max_probes == 1
    ds.hold.clear()
    for t in threads:
        t.join(SAFETY)
    assert answers["a@relay.test"][0] == 250 and answers["b@relay.test"][0] == 250, answers
    assert ds.max_probes == 1
    assert ds.probe_count() == 2


def test_a_client_the_dns_lists_refuse_causes_no_probe(relay):
    """The probe runs after the listener's checks: a listed client is refused first
    and costs the customer's server nothing."""
    zone = ("$SOA 60 bl.test. hostmaster.bl.test. 1 600 60 3600 60\n$NS 60 ns.bl.test.\n"
            ":127.0.0.2:Listed in bl.test\n127.0.0.1\n")
    with peers.rbldnsd({"bl.test": ("ip4set", zone)}, "bl.test") as lists:
        k, ds = relay(extra="resolver %s;\n" % lists,
                      listen_extra="    dnsbl_sites bl.test*10;\n")
        code, text = rcpt(k, "nobody@relay.test")
        assert code == 554 and "bl.test" in text, text
        assert ds.probe_count() == 0


def test_authenticated_and_trusted_clients_are_not_probed(relay):
    k, ds = relay(extra="relay {\n    trusted_networks 127.0.0.0/8;\n}\n")
    assert rcpt(k, "nobody@relay.test")[0] == 250
    assert ds.probe_count() == 0


def test_config_relay_domain_needs_relay(kurier_factory):
    k = kurier_factory(extra="transport c.test {\n    relay_domain on;\n}\n")
    r = k.cli("config", "check", check=False)
    assert r.returncode != 0
    assert b"relay_domain needs relay" in r.stdout + r.stderr


# --- sender callout (issue 11 item 4, optional part) ----------------------------------

CALLOUT_HOST = "127.0.0.62"  # the sender domain's MX

ZONES = r"""
    local-zone: "test." nodefault
    local-zone: "callout.test." static
    local-data: "callout.test. 60 IN MX 10 mx.callout.test."
    local-data: "mx.callout.test. 60 IN A %s"
    local-zone: "relay.test." static
    local-data: "relay.test. 60 IN MX 10 mx.example.test."
    local-zone: "." static
""" % CALLOUT_HOST


@pytest.fixture
def callout(kurier_factory):
    """make(mode, callout=True) -> (kurier, sender_mx): a kurierd whose port-25 listener
    verifies senders (sender_verify MODE, sender_callout on) with the MX of callout.test
    (from a real unbound) being a Downstream that knows good@callout.test."""
    with peers.unbound(ZONES, "callout.test") as resolver:
        port = free_port(CALLOUT_HOST)
        ds = peers.Downstream(CALLOUT_HOST, port, ["good@callout.test"])
        try:
            def make(mode="reject", on=True, extra=""):
                k = kurier_factory(
                    listen_extra="    sender_verify %s;\n    sender_callout %s;\n" % (
                        mode, "on" if on else "off"),
                    extra="resolver %s;\noutbound {\n    port %d;\n    tls none;\n}\n%s" % (
                        resolver, port, extra % {"port": port}))
                k.add_domain("example.test")
                k.add_mailbox("demo@example.test")
                k.start()
                return k, ds
            yield make
        finally:
            ds.stop()


def test_callout_refused_sender_is_rejected_and_cached(callout):
    k, mx = callout("reject")
    assert rcpt(k, "demo@example.test", sender="good@callout.test")[0] == 250
    assert mx.probe_count("good@callout.test") == 1
    code, text = rcpt(k, "demo@example.test", sender="ghost@callout.test")
    assert code == 550 and "5.1.0" in text and "Sender address rejected" in text, text
    assert "user unknown in the customer's directory" in text, text
    # cached: the sender's MX is not asked again
    assert rcpt(k, "demo@example.test", sender="ghost@callout.test")[0] == 550
    assert rcpt(k, "demo@example.test", sender="good@callout.test")[0] == 250
    assert mx.probe_count() == 2


def test_callout_failure_is_greylisted_in_greylist_mode(callout):
    k, mx = callout("greylist")
    code, text = rcpt(k, "demo@example.test", sender="ghost@callout.test")
    assert code == 451 and "Greylisted" in text, text
    assert "callout to its MX" in k.log()


def test_callout_for_a_sender_in_our_relay_domain_asks_the_server_behind_us(callout):
    """relay.test's MX is us: its senders are asked at the transport's relay."""
    k, mx = callout("reject", extra="transport relay.test {\n    relay %s:%%(port)d;\n"
                                    "    relay_domain on;\n}\n" % CALLOUT_HOST)
    code, text = rcpt(k, "demo@example.test", sender="ghost@relay.test")
    assert code == 550 and "5.1.0" in text and "callout" in text, text
    assert mx.probe_count("ghost@relay.test") == 1


def test_callout_is_off_by_default(callout):
    k, mx = callout("reject", on=False)
    assert rcpt(k, "demo@example.test", sender="ghost@callout.test")[0] == 250
    assert mx.probe_count() == 0


def test_hangup_during_the_callout_cancels_it(callout):
    k, mx = callout("reject")
    mx.hold.set()
    r = Raw(k.port)
    assert r.reply()[0] == 220
    r.send("EHLO client.test\r\nMAIL FROM:<held@callout.test>\r\nRCPT TO:<demo@example.test>\r\n")
    wait_for(lambda: mx.held == 1, "the callout at the sender's MX", k)
    r.close()
    wait_for(lambda: mx.hangups == 1, "the callout's connection closed", k)
    mx.hold.clear()
    assert "callout from=<held@callout.test>" not in k.log()
    assert k.stop() == 0
    assert "ERROR: AddressSanitizer" not in k.log() and "runtime error" not in k.log()
    assert "ERROR: LeakSanitizer" not in k.log()


def test_check_client_sends_no_probe(relay):
    k, ds = relay()
    out = k.cli("check-client", "192.0.2.9", "--to", "nobody@relay.test").stdout.decode()
    assert "relay_verify pass (relay domain: recipient not probed here)" in out, out
    assert ds.probe_count() == 0
