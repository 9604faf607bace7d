#!/usr/bin/python3
"""Blocklist monitoring of our egress addresses (issue 12 item 4): a real rbldnsd serves
test DNS lists listing 127.0.0.3 (and ::1 in an IPv6 list) and answering a refusal code
for 127.0.0.4; kurierd looks its addresses up on a short interval, logs and stores each
change, mails the postmaster and POSTs JSON to a webhook (a small http.server here).
Once the zone no longer lists 127.0.0.3 and the hold time passed, it is clear again.
The daemon stops cleanly with lookups and a webhook POST in flight (ASan build)."""

import email
import email.policy
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import ssl
import tempfile
import threading
import time

import pytest

from conftest import KURIER, SAFETY, free_port
from peers import rbldnsd, rbldnsd_rewrite

ZONE = """$SOA 1 mon.test. hostmaster.mon.test. 1 600 60 3600 1
$NS 1 ns.mon.test.
$TTL 1
:127.0.0.2:Listed in mon.test, see https://mon.test/lookup?ip=$
127.0.0.3
127.0.0.4 :127.255.255.254:Query refused: open resolver
"""
ZONE_WITHOUT_3 = """$SOA 1 mon.test. hostmaster.mon.test. 2 600 60 3600 1
$NS 1 ns.mon.test.
$TTL 1
:127.0.0.2:Listed in mon.test, see https://mon.test/lookup?ip=$
127.0.0.4 :127.255.255.254:Query refused: open resolver
"""
ZONE6 = """$SOA 1 mon6.test. hostmaster.mon6.test. 1 600 60 3600 1
$NS 1 ns.mon6.test.
$TTL 1
:127.0.0.2:Listed in mon6.test: $
::1
"""

POSTMASTER = "postmaster@example.test"


@pytest.fixture
def lists():
    with rbldnsd({"mon.test": ("ip4set", ZONE), "mon6.test": ("ip6trie", ZONE6)},
                 "mon.test") as addr:
        yield addr


class Hook:
    """A webhook receiver: records each POST (path, body); answers 204, or never when
    hang is set (the request stays in flight)."""

    def __init__(self, hang=False, cert=None):
        self.posts = []
        self.got = threading.Event()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                hook.posts.append((self.path, self.headers.get("Content-Type"), body))
                hook.got.set()
                if hang:
                    time.sleep(SAFETY)  # the daemon stops before this ends
                    return
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*cert)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, pred, what, k):
        deadline = time.time() + SAFETY
        while time.time() < deadline:
            found = [j for j in self.events() if pred(j)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError("webhook never got %s; got %r\nlog:\n%s" % (
            what, self.posts, k.log()[-3000:]))

    def events(self):
        return [json.loads(body) for _, _, body in list(self.posts)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def monitor_conf(resolver, webhook_port, extra="", scheme="http"):
    return ("resolver %s;\n"
            "postmaster %s;\n"
            "monitor {\n"
            "    addresses 127.0.0.2 127.0.0.3 127.0.0.4;\n"
            "    addresses ::1;\n"
            "    lists mon.test mon6.test;\n"
            "    delist mon.test https://mon.test/delist?ip=$ip;\n"
            "    interval 1s;\n"
            "    hold 2s;\n"
            "    webhook %s://127.0.0.1:%d/hook/secret-token;\n"
            "%s"
            "}\n" % (resolver, POSTMASTER, scheme, webhook_port, extra))


def start(kurier_factory, conf):
    k = kurier_factory(extra=conf)
    k.add_domain("example.test")
    k.add_mailbox(POSTMASTER, "pm")
    k.start()
    return k


def wait_until(pred, what, k):
    deadline = time.time() + SAFETY
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("never: %s\nlog:\n%s" % (what, k.log()[-3000:]))


def status(k, *args):
    return k.cli("monitor", "status", *args).stdout.decode()


def reports(k):
    """The monitor's mails in the postmaster's maildir: {(state, address, list): msg}."""
    out = {}
    for path in k.maildir_new(POSTMASTER):
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        tag = msg["X-Kurier-Monitor"]
        if tag:
            out[tuple(str(tag).split())] = msg
    return out


def test_listing_reported_refusal_unknown_and_clear_after_hold(kurier_factory, lists, hook):
    k = start(kurier_factory, monitor_conf(lists, hook.port))

    # the listed address is reported within a round, from its first lookup
    k.wait_log("address=127.0.0.3, list=mon.test, state=listed (was none), code=127.0.0.2, "
               "txt=\"Listed in mon.test, see https://mon.test/lookup?ip=127.0.0.3\", "
               "delist=https://mon.test/delist?ip=127.0.0.3")
    # IPv6: nibble-format lookup in the IPv6 list
    k.wait_log("address=::1, list=mon6.test, state=listed (was none), code=127.0.0.2")
    # a refusal code is "unknown" with a warning, never a listing
    k.wait_log("address=127.0.0.4, list=mon.test, state=unknown (was none), "
               "code=127.255.255.254: not a listing code")
    # the unlisted address was looked up and found clear (stored quietly)
    wait_until(lambda: any(l.split()[:3] == ["127.0.0.2", "mon.test", "clear"]
                           for l in status(k).splitlines()),
               "127.0.0.2 clear on mon.test in kurier monitor status", k)
    log = k.log()
    assert "address=127.0.0.2, list=mon.test, state=listed" not in log
    assert "address=127.0.0.4, list=mon.test, state=listed" not in log

    # the postmaster's mail: list, TXT and delisting page
    wait_until(lambda: {("listed", "127.0.0.3", "mon.test"), ("listed", "::1", "mon6.test"),
                        ("unknown", "127.0.0.4", "mon.test")} <= set(reports(k)),
               "the postmaster got the three reports", k)
    msg = reports(k)[("listed", "127.0.0.3", "mon.test")]
    assert msg["Subject"] == "[kurier] 127.0.0.3 is listed on mon.test"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.test>"
    body = msg.get_content()
    assert "mon.test" in body and "127.0.0.2" in body, body
    assert "Listed in mon.test, see https://mon.test/lookup?ip=127.0.0.3" in body, body
    assert "https://mon.test/delist?ip=127.0.0.3" in body, body

    # the webhook: one JSON document per change
    ev = hook.wait(lambda j: j["address"] == "127.0.0.3" and j["state"] == "listed",
                   "the listing of 127.0.0.3", k)
    assert ev["list"] == "mon.test" and ev["previous"] == "none"
    assert ev["code"] == "127.0.0.2"
    assert ev["txt"] == "Listed in mon.test, see https://mon.test/lookup?ip=127.0.0.3"
    assert ev["delist_url"] == "https://mon.test/delist?ip=127.0.0.3"
    assert ev["host"] == "mx.example.test" and ev["time"].endswith("Z")
    assert all(p == "/hook/secret-token" and ct == "application/json"
               for p, ct, _ in hook.posts), hook.posts
    hook.wait(lambda j: j["address"] == "127.0.0.4" and j["state"] == "unknown",
              "the refusal for 127.0.0.4", k)
    assert "secret-token" not in k.log()  # the URL's path may hold a secret

    # delisted: clear again once the hold time passed without a listing
    rbldnsd_rewrite(lists, "mon.test", ZONE_WITHOUT_3)
    k.wait_log("address=127.0.0.3, list=mon.test: no longer listed; clear after 2s unlisted")
    k.wait_log("address=127.0.0.3, list=mon.test, state=clear (was listed)")
    ev = hook.wait(lambda j: j["address"] == "127.0.0.3" and j["state"] == "clear",
                   "the end of the listing of 127.0.0.3", k)
    assert ev["previous"] == "listed"
    t = lambda s: time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))
    assert t(ev["time"]) - t(ev["since"]) >= 2, ev  # seen unlisted for the hold time
    wait_until(lambda: ("clear", "127.0.0.3", "mon.test") in reports(k),
               "the postmaster got the all-clear", k)
    assert reports(k)[("clear", "127.0.0.3", "mon.test")]["Subject"] == \
        "[kurier] 127.0.0.3 is no longer listed on mon.test"
    # the others did not change
    assert "address=::1, list=mon6.test, state=clear" not in k.log()
    assert "address=127.0.0.4, list=mon.test, state=listed" not in k.log()

    # the history, with what the list said
    hist = k.cli("monitor", "history", "127.0.0.3").stdout.decode()
    lines = [l for l in hist.splitlines() if not l.startswith(" ")]
    assert [l.split()[-3:] for l in lines] == [["none", "->", "listed"],
                                              ["listed", "->", "clear"]], hist
    assert "mon.test" in lines[0] and "txt  Listed in mon.test" in hist, hist
    st = status(k, "127.0.0.3")
    assert st.split()[:3] == ["127.0.0.3", "mon.test", "clear"], st
    assert k.stop() == 0


def test_listing_survives_a_restart_without_a_second_report(kurier_factory, lists, hook):
    k = start(kurier_factory, monitor_conf(lists, hook.port, "    mail off;\n"))
    k.wait_log("address=127.0.0.3, list=mon.test, state=listed (was none)")
    hook.wait(lambda j: j["address"] == "127.0.0.3", "the listing", k)
    wait_until(lambda: "listed" in status(k, "127.0.0.3"), "the listing stored", k)
    assert k.stop() == 0
    k.start()
    k.wait_log("address=127.0.0.3, list=mon.test, state=listed (since the last run)")
    # a later change still counts: the refusal list and ::1 stay as they were
    rbldnsd_rewrite(lists, "mon.test", ZONE_WITHOUT_3)
    k.wait_log("address=127.0.0.3, list=mon.test, state=clear (was listed)")
    hist = k.cli("monitor", "history").stdout.decode()
    rows = [l for l in hist.splitlines() if l.split()[2:3] == ["127.0.0.3"]]
    assert [r.split()[-3:] for r in rows] == [["none", "->", "listed"],
                                             ["listed", "->", "clear"]], hist
    listed = [j for j in hook.events() if j["address"] == "127.0.0.3" and j["state"] == "listed"]
    assert len(listed) == 1, hook.events()
    assert k.maildir_new(POSTMASTER) == []  # mail off
    assert k.stop() == 0


def test_reload_watches_new_addresses_and_keeps_states(kurier_factory, lists, hook):
    conf = monitor_conf(lists, hook.port, "    mail off;\n")
    k = start(kurier_factory, conf.replace("127.0.0.2 127.0.0.3 127.0.0.4", "127.0.0.2"))
    k.wait_log("address=::1, list=mon6.test, state=listed (was none)")
    wait_until(lambda: "127.0.0.2 " in status(k), "127.0.0.2 looked up", k)
    hook.wait(lambda j: j["address"] == "::1", "the listing of ::1", k)
    assert "127.0.0.3" not in k.log()
    with open(k.conf) as f:
        text = f.read()
    with open(k.conf, "w") as f:
        f.write(text.replace("addresses 127.0.0.2;", "addresses 127.0.0.2 127.0.0.3;"))
    k.proc.send_signal(signal.SIGHUP)
    k.wait_log("address=127.0.0.3, list=mon.test, state=listed (was none)")
    # ::1 stayed listed through the reload: no second report
    assert k.log().count("address=::1, list=mon6.test, state=listed") == 1
    assert len([j for j in hook.events() if j["address"] == "::1"]) == 1, hook.events()
    assert k.stop() == 0


NET_ZONE = """$SOA 1 net.test. hostmaster.net.test. 1 600 60 3600 1
$NS 1 ns.net.test.
$TTL 1
:127.0.0.2:Whole network listed
127.0.0.32/27
"""


def test_a_listed_network_mails_the_postmaster_at_most_20_times_an_hour(kurier_factory):
    with rbldnsd({"net.test": ("ip4set", NET_ZONE)}, "net.test") as bl:
        k = start(kurier_factory,
                  "resolver %s;\npostmaster %s;\nmonitor {\n    addresses 127.0.0.32/27;\n"
                  "    lists net.test;\n    interval 1h;\n}\n" % (bl, POSTMASTER))
        k.wait_log("20 report mails this hour: further changes are not mailed")
        wait_until(lambda: k.log().count("list=net.test, state=listed (was none)") == 32,
                   "32 listings", k)
        k.wait_queue_empty()
        assert len(k.maildir_new(POSTMASTER)) == 20
        # every change is in the history all the same
        hist = k.cli("monitor", "history", "--limit", "100").stdout.decode()
        assert len([l for l in hist.splitlines() if l.endswith("none -> listed")]) == 32, hist
        assert k.stop() == 0


def test_stop_with_lookups_in_flight(kurier_factory, hook):
    # a resolver that never answers: every lookup is still pending at SIGTERM
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        k = start(kurier_factory,
                  monitor_conf("127.0.0.1@%d" % silent.getsockname()[1], hook.port,
                               "    concurrency 3;\n"))
        # the silent resolver got the lookups (at most 3 in flight)
        silent.settimeout(SAFETY)
        silent.recvfrom(4096)
        assert k.stop() == 0
    log = k.log()
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]


def test_stop_with_a_webhook_post_in_flight(kurier_factory, lists):
    h = Hook(hang=True)
    try:
        k = start(kurier_factory, monitor_conf(lists, h.port, "    webhook_timeout 5m;\n"))
        assert h.got.wait(SAFETY), k.log()[-3000:]
        assert k.stop() == 0
        log = k.log()
        assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
    finally:
        h.close()


@pytest.fixture(scope="module")
def certpair():
    # in a folder the daemon's user reaches (pytest's tmp_path is root's alone)
    d = tempfile.mkdtemp(prefix="kurier-hookcert-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    os.chmod(d, 0o755)
    os.chmod(cert, 0o644)  # the daemon reads the CA file as user kurier
    yield cert, key
    shutil.rmtree(d, ignore_errors=True)


def test_https_webhook_verified(kurier_factory, lists, certpair):
    h = Hook(cert=certpair)
    try:
        k = start(kurier_factory, monitor_conf(lists, h.port, "    mail off;\n", "https") +
                  "outbound {\n    ca_file %s;\n}\n" % certpair[0])
        ev = h.wait(lambda j: j["address"] == "127.0.0.3" and j["state"] == "listed",
                    "the listing over https", k)
        assert ev["list"] == "mon.test"
        k.wait_log("webhook 127.0.0.1:%d: answered 204" % h.port)
        assert k.stop() == 0
    finally:
        h.close()


def test_https_webhook_with_an_untrusted_certificate_gets_nothing(kurier_factory, lists,
                                                                   certpair):
    h = Hook(cert=certpair)
    try:
        # no ca_file: the system store does not know the test certificate
        k = start(kurier_factory, monitor_conf(lists, h.port, "    mail off;\n", "https"))
        k.wait_log("address=127.0.0.3, list=mon.test, state=listed")
        k.wait_log("webhook 127.0.0.1:%d: no answer (certificate verify failed)" % h.port)
        assert h.posts == []
        assert k.stop() == 0
    finally:
        h.close()


@pytest.mark.parametrize("block, message", [
    ("addresses 10.0.0.0/8;", "covers more than 256 addresses"),
    ("webhook ftp://example.test/x;", "invalid webhook"),
    ('webhook "http://example.test/a b";', "has spaces or control characters"),
    ("webhook http://;", "names no host"),
    ("delist bl.test;", "takes pairs of arguments: ZONE URL"),
    ("delist bl.test mailto:x@example.test;", "an http:// or https:// URL"),
    ("lists bl.test=127.0.0.x;", "invalid filter in DNS list"),
    ("interval 0s;", "out of range"),
])
def test_config_errors_are_named(tmp_path, block, message):
    conf = tmp_path / "kurier.conf"
    conf.write_text("hostname mx.example.test;\nmonitor {\n    %s\n}\n" % block)
    r = subprocess.run([KURIER, "config", "check", str(conf)], capture_output=True)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert "kurier.conf:" in err and message in err, err


def egress_benches(k):
    """{address: reason} of the every-destination benches in kurier egress status."""
    st = json.loads(k.cli("egress", "status", "--json").stdout.decode())
    return {a["address"]: b["reason"] for a in st["addresses"] for b in a["benches"]
            if b["destination"] is None}


def test_listed_pool_source_is_benched_and_comes_back(kurier_factory, lists):
    """The sources of an egress pool are watched without a monitor { addresses } line;
    a listing benches the address for every destination, the end of the listing (after
    hold) lifts the bench; the unlisted source is never benched."""
    conf = ("resolver %s;\npostmaster %s;\n"
            "egress pool main {\n    source 127.0.0.2;\n    source 127.0.0.3;\n"
            "    default on;\n}\n"
            "monitor {\n    lists mon.test;\n    interval 1s;\n    hold 2s;\n    mail off;\n}\n"
            % (lists, POSTMASTER))
    k = start(kurier_factory, conf)
    k.wait_log("address=127.0.0.3, list=mon.test, state=listed (was none)")
    wait_until(lambda: "127.0.0.3" in egress_benches(k), "127.0.0.3 benched", k)
    reason = egress_benches(k)["127.0.0.3"]
    assert reason.startswith("listed on mon.test: Listed in mon.test"), reason
    assert "127.0.0.2" not in egress_benches(k)

    rbldnsd_rewrite(lists, "mon.test", ZONE_WITHOUT_3)
    k.wait_log("address=127.0.0.3, list=mon.test, state=clear (was listed)")
    wait_until(lambda: "127.0.0.3" not in egress_benches(k), "127.0.0.3 unbenched", k)
    assert "127.0.0.2" not in egress_benches(k)
