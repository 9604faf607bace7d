#!/usr/bin/python3
"""Egress pools (docs/egress.md): kurierd sends from the loopback addresses
127.0.0.2-127.0.0.9 of its pools to receivers on 127.0.1.x that see each
connection's source address (aiosmtpd) and refuse chosen sources with real
blocklist replies. Covered: the spread by weight (counted at the receiver), the
EHLO name per source, a 5xx blocklist reply that benches the address for that
receiver only and delivers through another address with no bounce, `kurier egress
status|bench|unbench` through the daemon, the fallback pool and the fallback
smarthost, and, when every address is benched, the held message and its
plain-words bounce at the end of its lifetime."""

import json
import os
import shutil
import tempfile
import threading

import pytest
from aiosmtpd.controller import Controller

import peers
from conftest import SAFETY, free_port
from test_outbound import submit, wait_for, smtp_lines

ZONES = r"""
    local-zone: "test." nodefault
    local-zone: "one.test." static
    local-data: "one.test. 60 IN MX 10 mx.one.test."
    local-data: "mx.one.test. 60 IN A 127.0.1.1"
    local-zone: "two.test." static
    local-data: "two.test. 60 IN MX 10 mx.two.test."
    local-data: "mx.two.test. 60 IN A 127.0.1.2"
    local-zone: "." static
"""

PROOFPOINT = "554 Blocked - see https://ipcheck.proofpoint.com/?ip=%s"
BARRACUDA = ("550 5.7.1 Service unavailable; Client host [%s] blocked using "
             "b.barracudacentral.org")


@pytest.fixture(scope="module")
def unbound():
    with peers.unbound(ZONES, "one.test") as addr:
        yield addr


class Handler:
    """Refuses RCPT from the source addresses in block (address -> reply, "%s"
    becomes the address); keeps (source, helo, rcpts) of each accepted message."""

    def __init__(self, block=None):
        self.block = dict(block or {})
        self.messages = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        ip = session.peer[0]
        with self.lock:
            rep = self.block.get(ip)
        if rep:
            return rep % ip if "%s" in rep else rep
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append({"ip": session.peer[0], "helo": session.host_name,
                                  "rcpts": list(envelope.rcpt_tos)})
        return "250 2.0.0 Ok: queued"

    def by_ip(self):
        with self.lock:
            out = {}
            for m in self.messages:
                out[m["ip"]] = out.get(m["ip"], 0) + len(m["rcpts"])
            return out

    def count(self):
        with self.lock:
            return sum(len(m["rcpts"]) for m in self.messages)


@pytest.fixture
def rx():
    made = []

    def make(host, port, block=None):
        h = Handler(block)
        c = Controller(h, hostname=host, port=port, ready_timeout=SAFETY)
        c.start()
        made.append(c)
        return h

    yield make
    for c in made:
        c.stop()


@pytest.fixture(scope="module")
def shipped_rules():
    """The shipped reply rules (data/replies.rules) where the daemon's user can read
    them after the privilege drop (a checkout in /root is out of its reach)."""
    d = tempfile.mkdtemp(prefix="kurier-rules-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "replies.rules")
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "data", "replies.rules"), path)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(d, True)


@pytest.fixture
def egress(kurier_factory, unbound, shipped_rules):
    """make(pools, queue=None) -> (kurier, port): a kurierd relaying for 127/8 with
    the given egress pool blocks, its remote port P (receivers on 127.0.1.x:P)."""

    def make(pools, queue=None, extra=""):
        port = free_port()
        k = kurier_factory(
            queue=queue,
            extra="resolver %s;\nreply_rules %s;\nrelay {\n    trusted_networks 127.0.0.0/8;\n}\n"
                  "outbound {\n    port %d;\n    connect_timeout 5s;\n    idle_time 2s;\n}\n"
                  "%s\n%s" % (unbound, shipped_rules, port, pools, extra))
        k.add_domain("example.test")
        k.add_mailbox("demo@example.test", "demo")
        k.start()
        return k, port

    return make


def status(k):
    return json.loads(k.cli("egress", "status", "--json").stdout.decode())


def addr_status(k, ip):
    for a in status(k)["addresses"]:
        if a["address"] == ip:
            return a
    raise AssertionError("%s not in egress status" % ip)


POOL_2_1 = """egress pool main {
    source 127.0.0.2 weight 2 ehlo out2.example.test;
    source 127.0.0.3 ehlo out3.example.test;
    default on;
}
"""


def test_volume_spread_by_weight_with_ehlo_per_source(egress, rx):
    k, port = egress(POOL_2_1)
    one = rx("127.0.1.1", port)
    for i in range(9):
        submit(k, ["r%d@one.test" % i])
    wait_for(lambda: one.count() == 9, k=k, what="9 deliveries")
    assert one.by_ip() == {"127.0.0.2": 6, "127.0.0.3": 3}, one.by_ip()
    helos = {(m["ip"], m["helo"]) for m in one.messages}
    assert helos == {("127.0.0.2", "out2.example.test"), ("127.0.0.3", "out3.example.test")}
    k.wait_queue_empty()
    a2 = addr_status(k, "127.0.0.2")
    assert a2["pools"] == ["main"] and a2["state"] == "active", a2
    assert a2["messages_day"] == 6 and a2["recipients_day"] == 6, a2
    assert a2["destinations"][0]["destination"] == "one.test", a2


POOL_EQUAL = """egress pool main {
    source 127.0.0.2;
    source 127.0.0.3;
    default on;
}
"""


def test_blocklist_reply_benches_for_that_receiver_and_resends(egress, rx):
    k, port = egress(POOL_EQUAL)
    one = rx("127.0.1.1", port, block={"127.0.0.2": PROOFPOINT})
    two = rx("127.0.1.2", port)
    # the first pick is 127.0.0.2: refused with a 5xx blocklist reply, benched for
    # one.test, and the recipient goes again at once from 127.0.0.3
    submit(k, ["bob@one.test"])
    wait_for(lambda: one.count() == 1, k=k, what="delivery through the other address")
    assert one.by_ip() == {"127.0.0.3": 1}
    k.wait_log("status=sent")
    k.wait_queue_empty()
    lines = smtp_lines(k, "bob@one.test")
    assert len(lines) == 1 and "status=sent" in lines[0], lines
    assert "status=bounced" not in k.log()
    assert k.maildir_new("demo@example.test") == []  # no bounce
    a2 = addr_status(k, "127.0.0.2")
    assert a2["state"] == "partly benched", a2
    assert [b["destination"] for b in a2["benches"]] == ["one.test"], a2
    assert "ipcheck.proofpoint.com" in a2["benches"][0]["reason"], a2
    text = k.cli("egress", "status").stdout.decode()
    assert "127.0.0.2 pool=main state=benched for 1 destination" in text, text
    assert "benched for one.test until" in text, text
    # another receiver still gets mail from 127.0.0.2
    for i in range(2):
        submit(k, ["x%d@two.test" % i])
    wait_for(lambda: two.count() == 2, k=k, what="deliveries to two.test")
    assert two.by_ip().get("127.0.0.2", 0) >= 1, two.by_ip()
    # one.test only gets mail from 127.0.0.3 now
    for i in range(3):
        submit(k, ["y%d@one.test" % i])
    wait_for(lambda: one.count() == 4, k=k, what="deliveries to one.test")
    assert one.by_ip() == {"127.0.0.3": 4}, one.by_ip()


def test_manual_bench_and_unbench(egress, rx):
    k, port = egress(POOL_EQUAL)
    one = rx("127.0.1.1", port)
    r = k.cli("egress", "bench", "127.0.0.3", "--for", "2h", "--reason", "maintenance")
    assert "benched 127.0.0.3 for all destinations" in r.stdout.decode()
    a3 = addr_status(k, "127.0.0.3")
    assert a3["state"] == "benched" and a3["benches"][0]["destination"] is None, a3
    assert a3["benches"][0]["reason"] == "maintenance"
    for i in range(4):
        submit(k, ["m%d@one.test" % i])
    wait_for(lambda: one.count() == 4, k=k, what="4 deliveries")
    assert one.by_ip() == {"127.0.0.2": 4}, one.by_ip()
    r = k.cli("egress", "unbench", "127.0.0.3")
    assert "lifted 1 bench of 127.0.0.3" in r.stdout.decode()
    assert addr_status(k, "127.0.0.3")["state"] == "active"
    for i in range(2):
        submit(k, ["n%d@one.test" % i])
    wait_for(lambda: one.count() == 6, k=k, what="2 more deliveries")
    assert one.by_ip().get("127.0.0.3") == 1, one.by_ip()
    # bad input gets a clear error
    r = k.cli("egress", "bench", "not-an-ip", check=False)
    assert r.returncode != 0 and b"not an IP address" in r.stderr
    r = k.cli("egress", "bench", "127.0.0.2", "--for", "soon", check=False)
    assert r.returncode != 0 and b"invalid duration" in r.stderr
    # a bench for one destination survives a restart (directory database)
    k.cli("egress", "bench", "127.0.0.2", "--destination", "two.test")
    k.stop()
    k.start()
    a2 = addr_status(k, "127.0.0.2")
    assert [b["destination"] for b in a2["benches"]] == ["two.test"], a2
    k.cli("egress", "unbench", "127.0.0.2", "--destination", "two.test")
    assert addr_status(k, "127.0.0.2")["benches"] == []


def test_fallback_pool_takes_over(egress, rx):
    pools = """egress pool main {
    source 127.0.0.2;
    default on;
    fallback pool spare;
}
egress pool spare {
    source 127.0.0.4 ehlo spare.example.test;
}
"""
    k, port = egress(pools)
    one = rx("127.0.1.1", port, block={"127.0.0.2": BARRACUDA})
    submit(k, ["fb@one.test"])
    wait_for(lambda: one.count() == 1, k=k, what="delivery through the fallback pool")
    assert one.by_ip() == {"127.0.0.4": 1}
    assert one.messages[0]["helo"] == "spare.example.test"
    k.wait_queue_empty()
    assert "status=bounced" not in k.log()


def test_fallback_relay_takes_over(egress, rx):
    sport = free_port("127.0.1.3")
    pools = """egress pool main {
    source 127.0.0.2;
    source 127.0.0.3;
    default on;
    fallback relay 127.0.1.3:%d;
}
""" % sport
    k, port = egress(pools)
    one = rx("127.0.1.1", port, block={"127.0.0.2": PROOFPOINT, "127.0.0.3": PROOFPOINT})
    smart = rx("127.0.1.3", sport)
    submit(k, ["sh@one.test"])
    wait_for(lambda: smart.count() == 1, k=k, what="delivery through the smarthost")
    assert one.count() == 0
    k.wait_queue_empty()
    assert "status=bounced" not in k.log()
    assert "handing over to 127.0.1.3:%d" % sport in k.log()


def test_all_benched_holds_then_bounces_in_plain_words(egress, rx):
    k, port = egress(POOL_EQUAL, queue={"lifetime": "15s", "retry_first": "2s",
                                        "retry_max": "5s"})
    one = rx("127.0.1.1", port, block={"127.0.0.2": PROOFPOINT, "127.0.0.3": BARRACUDA})
    submit(k, ["held@one.test"])
    k.wait_log("status=deferred")
    line = smtp_lines(k, "held@one.test")[0]
    assert "dsn=4.7.1" in line and "all our sending addresses are blocked by mx.one.test" in line, line
    assert one.count() == 0
    st = status(k)
    benched = {a["address"]: a["state"] for a in st["addresses"]}
    assert benched == {"127.0.0.2": "partly benched", "127.0.0.3": "partly benched"}, st
    # no bounce while it waits; the bounce comes at the end of the lifetime
    assert k.maildir_new("demo@example.test") == []
    k.wait_log("status=bounced", timeout=300)  # lifetime 15s, then safety
    files = k.wait_mail("demo@example.test")
    body = open(files[0], "rb").read().decode(errors="replace")
    flat = " ".join(body.split())
    assert "blocks the sending addresses of our mail system" in flat, body
    assert "working on having the addresses removed" in flat, body
    assert "Please check the address" not in flat, body  # not the generic expiry text


def test_rate_limit_reply_slows_that_address_down(egress, rx):
    k, port = egress(POOL_EQUAL)
    one = rx("127.0.1.1", port, block={
        "127.0.0.2": "450 4.7.1 Too many messages from %s, rate limit exceeded, try again later"})
    two = rx("127.0.1.2", port)
    submit(k, ["slow@one.test"])  # first pick 127.0.0.2: deferred, slowed for one.test
    k.wait_log("status=deferred")
    # the retry goes from the address that is not slowed down
    wait_for(lambda: one.count() == 1, k=k, what="the retry's delivery")
    assert one.by_ip() == {"127.0.0.3": 1}
    a2 = addr_status(k, "127.0.0.2")
    assert [s["destination"] for s in a2["slowdowns"]] == ["one.test"], a2
    assert a2["benches"] == [] and a2["state"] == "active", a2
    # not a blocklist: no bench; another receiver still gets mail from it
    for i in range(2):
        submit(k, ["s%d@two.test" % i])
    wait_for(lambda: two.count() == 2, k=k, what="deliveries to two.test")
    assert two.by_ip().get("127.0.0.2", 0) >= 1, two.by_ip()


def test_pool_by_sender_domain_and_by_listener(egress, rx):
    lport = free_port()
    pools = """egress pool main {
    source 127.0.0.2;
    default on;
}
egress pool customer {
    source 127.0.0.5;
    sender_domains example.test;
}
egress pool second_listener {
    source 127.0.0.6;
    listeners 127.0.0.1:%d;
}
listen 127.0.0.1:%d {
    role mx;
}
""" % (lport, lport)
    k, port = egress(pools)
    one = rx("127.0.1.1", port)
    submit(k, ["a@one.test"], sender="demo@example.test")
    wait_for(lambda: one.count() == 1, k=k, what="the customer's delivery")
    submit(k, ["b@one.test"], sender="someone@elsewhere.test")
    wait_for(lambda: one.count() == 2, k=k, what="the default pool's delivery")
    import smtplib
    with smtplib.SMTP("127.0.0.1", lport, timeout=30) as s:
        s.sendmail("x@elsewhere.test", ["c@one.test"], "Subject: l\r\n\r\nhi\r\n")
    wait_for(lambda: one.count() == 3, k=k, what="the second listener's delivery")
    by_rcpt = {m["rcpts"][0]: m["ip"] for m in one.messages}
    assert by_rcpt == {"a@one.test": "127.0.0.5", "b@one.test": "127.0.0.2",
                       "c@one.test": "127.0.0.6"}, by_rcpt


def test_config_errors_are_named(kurier_factory):
    k = kurier_factory(extra="""egress pool p {
    source 300.1.1.1;
    source 127.0.0.2 weight 0;
    fallback pool nowhere;
}
""")
    r = k.cli("config", "check", k.conf, check=False)
    err = r.stdout.decode() + r.stderr.decode()
    assert r.returncode != 0
    assert 'invalid source address "300.1.1.1"' in err, err
    assert 'invalid weight "0"' in err, err


class GreetingBlocker(peers.Listener):
    """A raw SMTP receiver that greets the sources in blocked with a blocklist
    refusal and hangs up at once; others get a plain dialogue. Keeps the source of
    each accepted message."""

    def __init__(self, host, port, blocked):
        self.blocked = dict(blocked)
        self.accepted = []
        self.refused = 0
        super().__init__(host, port)

    def _session(self, c, ip):
        try:
            c.settimeout(30)
            if ip in self.blocked:
                c.sendall((self.blocked[ip] % ip + "\r\n").encode())
                self.refused += 1
                return
            f = c.makefile("rb")
            c.sendall(b"220 test ESMTP\r\n")
            while True:
                line = f.readline().decode(errors="replace").strip()
                verb = line[:4].upper()
                if not line:
                    return
                if verb == "EHLO":
                    c.sendall(b"250-test\r\n250 PIPELINING\r\n")
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                    c.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == "DATA":
                    c.sendall(b"354 go\r\n")
                    while f.readline() not in (b".\r\n", b""):
                        pass
                    self.accepted.append(ip)
                    c.sendall(b"250 2.0.0 Ok: queued\r\n")
                elif verb == "QUIT":
                    c.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    c.sendall(b"502 5.5.2 no\r\n")
        except OSError:
            pass
        finally:
            c.close()


def test_blocklist_greeting_and_hang_up_resends_from_another_address(egress):
    k, port = egress(POOL_EQUAL)
    rx2 = GreetingBlocker("127.0.1.2", port, {
        "127.0.0.2": "554 5.7.1 Service unavailable; Client host [%s] blocked using "
                     "zen.spamhaus.org"})
    try:
        submit(k, ["g@two.test"])
        wait_for(lambda: rx2.accepted == ["127.0.0.3"], k=k, what="delivery from 127.0.0.3")
        assert rx2.refused == 1
        k.wait_queue_empty()
        assert "status=bounced" not in k.log()
        a2 = addr_status(k, "127.0.0.2")
        assert [b["destination"] for b in a2["benches"]] == ["two.test"], a2
        assert "zen.spamhaus.org" in a2["benches"][0]["reason"], a2
    finally:
        rx2.stop()


def test_reload_changes_the_pools(egress, rx):
    import signal
    k, port = egress(POOL_EQUAL)
    one = rx("127.0.1.1", port)
    submit(k, ["before@one.test"])
    wait_for(lambda: one.count() == 1, k=k, what="delivery before the reload")
    with open(k.conf) as f:
        text = f.read()
    with open(k.conf, "w") as f:
        f.write(text.replace(POOL_EQUAL, "egress pool main {\n    source 127.0.0.7;\n"
                                         "    default on;\n}\n"))
    k.proc.send_signal(signal.SIGHUP)
    k.wait_log("reloaded configuration from")
    assert [a["address"] for a in status(k)["addresses"]] == ["127.0.0.7"]
    submit(k, ["after@one.test"])
    wait_for(lambda: one.count() == 2, k=k, what="delivery after the reload")
    assert one.messages[-1]["ip"] == "127.0.0.7", one.messages
