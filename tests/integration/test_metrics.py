#!/usr/bin/python3
"""Issue 17 item 5: the metrics listener. kurierd with metrics_listen serves Prometheus
text format at /metrics and "ok" at /healthz (scraped with curl); the counters move
with real SMTP traffic; every scrape passes a strict parser written to Prometheus's
text exposition format 0.0.4 rules (Debian's promtool comes with the whole
prometheus server, ~100 MB, so the rules are checked here)."""

import math
import re
import smtplib
import socket
import subprocess

import pytest

from conftest import SAFETY, free_port

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    assert re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s), "bad value %r" % s
    return float(s)


def parse_labels(text, i, line):
    """Parse '{a="x",b="y"}' starting after '{'; returns (dict, index after '}')."""
    labels = {}
    while True:
        if text[i] == "}":
            return labels, i + 1
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", text[i:])
        assert m, "bad label at %r" % line
        name = m.group(1)
        assert not name.startswith("__"), line
        assert name not in labels, "label %s twice: %r" % (name, line)
        i += m.end()
        val = []
        while text[i] != '"':
            if text[i] == "\\":
                assert text[i + 1] in '\\"n', "bad escape in %r" % line
                val.append({"\\": "\\", '"': '"', "n": "\n"}[text[i + 1]])
                i += 2
            else:
                assert text[i] != "\n", line
                val.append(text[i])
                i += 1
        labels[name] = "".join(val)
        i += 1
        if text[i] == ",":
            i += 1
        else:
            assert text[i] == "}", "expected , or } in %r" % line
    # not reached


def parse(text):
    """Strict parse of an exposition: returns {family: {"type", "help", "samples": [(name,
    labels, value)]}}. Asserts every rule it knows."""
    assert text.endswith("\n"), "the last line must end with a line feed"
    fams = {}
    order = []  # families in order of first appearance; each must be contiguous
    seen = set()

    def family_of(name):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)] if name.endswith(suffix) else None
            if base and base in fams and fams[base]["type"] in ("histogram", "summary"):
                return base
        return name

    for line in text.split("\n")[:-1]:
        assert line.strip() == line and line, "blank or padded line %r" % line
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert NAME.match(name), line
                f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
                if not order or order[-1] != name:
                    assert name not in order, "family %s not contiguous" % name
                    order.append(name)
                if parts[1] == "TYPE":
                    assert f["type"] is None and not f["samples"], "TYPE late or twice: " + line
                    assert len(parts) == 4 and parts[3] in TYPES, line
                    f["type"] = parts[3]
                else:
                    assert f["help"] is None, "HELP twice: " + line
                    f["help"] = parts[3] if len(parts) == 4 else ""
            continue
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        assert m, "bad sample line %r" % line
        name = m.group(0)
        i = m.end()
        labels = {}
        if line[i] == "{":
            labels, i = parse_labels(line, i + 1, line)
        rest = line[i:]
        assert rest.startswith(" "), line
        fields = rest[1:].split(" ")
        assert 1 <= len(fields) <= 2, line
        value = parse_value(fields[0])
        if len(fields) == 2:
            assert re.fullmatch(r"-?\d+", fields[1]), line
        fam = family_of(name)
        f = fams.setdefault(fam, {"type": "untyped", "help": None, "samples": []})
        if not order or order[-1] != fam:
            assert fam not in order, "family %s not contiguous" % fam
            order.append(fam)
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, "duplicate series %r" % line
        seen.add(key)
        f["samples"].append((name, labels, value))
    for fam, f in fams.items():
        if f["type"] == "counter":
            assert all(v >= 0 for _, _, v in f["samples"]), fam
        if f["type"] == "histogram":
            check_histogram(fam, f["samples"])
    return fams


def check_histogram(fam, samples):
    groups = {}
    for name, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            assert "le" in labels, name
            g["buckets"].append((parse_value(labels["le"]), value))
        elif name == fam + "_sum":
            g["sum"] = value
        elif name == fam + "_count":
            g["count"] = value
        else:
            raise AssertionError("%s in histogram %s" % (name, fam))
    for rest, g in groups.items():
        les = [le for le, _ in g["buckets"]]
        assert les == sorted(les) and les and les[-1] == math.inf, (fam, les)
        counts = [c for _, c in g["buckets"]]
        assert counts == sorted(counts), "%s buckets not cumulative: %s" % (fam, counts)
        assert g["count"] is not None and g["sum"] is not None, fam
        assert counts[-1] == g["count"], fam


def value(fams, fam, name=None, **labels):
    for n, l, v in fams[fam]["samples"]:
        if n == (name or fam) and all(l.get(k) == v2 for k, v2 in labels.items()):
            return v
    return 0


def scrape(port, path="/metrics"):
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", "60",
                        "http://127.0.0.1:%d%s" % (port, path)],
                       capture_output=True, timeout=SAFETY)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.decode().partition("\r\n\r\n")
    return head, body


@pytest.fixture
def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


def test_metrics_move_with_traffic(kurier_factory, dead_port):
    mport = free_port()
    k = kurier_factory(extra="metrics_listen %d;\n"  # a bare port: loopback
                             "relay {\n    trusted_networks 127.0.0.0/8;\n}\n"
                             "relay_host 127.0.0.1:%d;\n" % (mport, dead_port),
                       queue={"retry_first": "1h", "retry_max": "1h"})
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test")
    k.start()
    listener = "127.0.0.1:%d" % k.port

    head, body = scrape(mport)
    assert head.startswith("HTTP/1.1 200") and "text/plain; version=0.0.4" in head
    before = parse(body)
    assert before["kurier_smtp_connections_total"]["type"] == "counter"
    assert before["kurier_delivery_delay_seconds"]["type"] == "histogram"
    assert value(before, "kurier_delivery_delay_seconds", "kurier_delivery_delay_seconds_count") == 0
    c0 = value(before, "kurier_smtp_connections_total", listener=listener)  # start's probe

    # traffic: two accepted messages (one local, one to the dead relay host), one
    # refused recipient, in two sessions
    with smtplib.SMTP("127.0.0.1", k.port, timeout=30) as s:
        s.sendmail("alice@remote.test", ["demo@example.test"], b"Subject: a\r\n\r\nx\r\n")
        s.mail("alice@remote.test")
        assert s.rcpt("nosuch@example.test")[0] == 550
        s.rset()
    with smtplib.SMTP("127.0.0.1", k.port, timeout=30) as s:
        s.sendmail("alice@example.test", ["far@remote.test"], b"Subject: b\r\n\r\nx\r\n")
    k.wait_mail("demo@example.test")
    k.wait_log("status=deferred")
    k.wait_log("disconnect from")

    head, body = scrape(mport)
    after = parse(body)
    assert value(after, "kurier_smtp_connections_total", listener=listener) == c0 + 2
    assert value(after, "kurier_messages_accepted_total", listener=listener) == 2
    assert value(after, "kurier_messages_rejected_total", listener=listener, stage="RCPT",
                 reason="5.1.1") == 1
    assert value(after, "kurier_deliveries_total", status="sent", **{"class": "2"}) == 1
    assert value(after, "kurier_deliveries_total", status="deferred", **{"class": "4"}) == 1
    assert value(after, "kurier_delivery_delay_seconds",
                 "kurier_delivery_delay_seconds_count") == 1
    assert value(after, "kurier_spool_commit_batch_size",
                 "kurier_spool_commit_batch_size_sum") == 2
    assert value(after, "kurier_spool_flush_seconds", "kurier_spool_flush_seconds_count") >= 1
    assert value(after, "kurier_queue_messages", state="deferred") == 1
    assert value(after, "kurier_queue_messages_by_age", age="5m") == 1
    # both sessions ended ("disconnect from" is logged as a session is freed)
    assert value(after, "kurier_smtp_sessions", listener=listener) in (0, 1)

    head, body = scrape(mport, "/healthz")
    assert head.startswith("HTTP/1.1 200") and body == "ok\n"
    head, _ = scrape(mport, "/nope")
    assert head.startswith("HTTP/1.1 404")
    # only GET and HEAD
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                        "http://127.0.0.1:%d/metrics" % mport], capture_output=True,
                       timeout=SAFETY)
    assert r.stdout.decode() in ("405", "501"), r.stdout


def test_metrics_off_by_default_and_bad_address_refused(kurier_factory):
    k = kurier_factory()
    r = k.cli("config", "dump")
    assert re.search(r'metrics_listen\s+"";', r.stdout.decode()), r.stdout.decode()
    bad = kurier_factory(extra="metrics_listen localhost:9100;\n")
    with pytest.raises(RuntimeError):
        bad.start()
    assert "metrics_listen \"localhost:9100\": not PORT, IP:PORT" in bad.log()


def test_parser_rejects_what_prometheus_rejects():
    """The strict parser is strict: a few malformed expositions it must refuse."""
    good = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\"} 1\n"
    parse(good)
    for bad in [good[:-1],                                         # no final newline
                good + "a_total{l=\"v\"} 2\n",                     # duplicate series
                good + "b 1\na_total{l=\"w\"} 1\n",                # family not contiguous
                "# TYPE a counter\n# TYPE a counter\na 1\n",       # TYPE twice
                "a{l=\"x\\q\"} 1\n",                                # bad escape
                "a 1x\n",                                           # bad value
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                "h_sum 1\nh_count 1\n"]:                            # not cumulative
        with pytest.raises(AssertionError):
            parse(bad)


def test_tls_and_auth_counted(kurier_factory):
    """STARTTLS handshakes by protocol version; AUTH successes and failures."""
    import ssl
    from test_submission import selfsigned
    mport = free_port()
    k = kurier_factory(extra="metrics_listen 127.0.0.1:%d;\n" % mport)
    cert, key = selfsigned(k.dir, "mx.example.test")
    sub_port = free_port()
    with open(k.conf, "a") as f:
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    tls starttls;\n"
                "    cert %s;\n    key %s;\n}\n" % (sub_port, cert, key))
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", sub_port, timeout=30) as s:
        s.starttls(context=c)
        version = s.sock.version()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("demo@example.test", "wrong")
        s.login("demo@example.test", "demo")
    fams = parse(scrape(mport)[1])
    assert value(fams, "kurier_tls_handshakes_total", direction="inbound", version=version) == 1
    assert value(fams, "kurier_auth_total", result="failure") >= 1  # smtplib tries two mechanisms
    assert value(fams, "kurier_auth_total", result="success") == 1


def test_dns_lookups_counted(kurier_factory, dead_port):
    """Remote delivery asks kurier's resolver (a real unbound with a test zone): the
    MX and A lookups are counted by type."""
    import peers
    zones = ('    local-zone: "test." nodefault\n'
             '    local-zone: "far.test." static\n'
             '    local-data: "far.test. 60 IN MX 10 mx.far.test."\n'
             '    local-data: "mx.far.test. 60 IN A 127.0.0.21"\n'
             '    local-zone: "." static\n')
    with peers.unbound(zones, "far.test") as resolver:
        mport = free_port()
        k = kurier_factory(extra="metrics_listen %d;\nresolver %s;\n"
                                 "relay {\n    trusted_networks 127.0.0.0/8;\n}\n"
                                 "outbound {\n    port %d;\n    connect_timeout 5s;\n}\n"
                                 % (mport, resolver, dead_port),
                           queue={"retry_first": "1h", "retry_max": "1h"})
        k.add_domain("example.test")
        k.start()
        with smtplib.SMTP("127.0.0.1", k.port, timeout=30) as s:
            s.sendmail("a@example.test", ["b@far.test"], b"Subject: x\r\n\r\nx\r\n")
        k.wait_log("status=deferred")
        fams = parse(scrape(mport)[1])
        assert value(fams, "kurier_dns_lookups_total", type="mx") >= 1
        assert value(fams, "kurier_dns_lookups_total", type="a") >= 1
        assert value(fams, "kurier_deliveries_total", status="deferred", **{"class": "4"}) == 1
