#!/usr/bin/python3
"""kurier's resolver (src/dns on libunbound) against a real unbound serving test
zones on a loopback port, driven through `kurier dns lookup`: MX order and null MX,
A/AAAA, multi-string TXT, PTR (IPv4, private IPv4 and IPv6), TLSA, NXDOMAIN, NODATA,
SERVFAIL, timeouts, DNSSEC bogus answers, and the resolver taken from kurier.conf."""

import os
import random
import socket
import subprocess
import threading
import time

import pytest

import peers
from conftest import KURIER

TLSA_HEX = "0123456789abcdef" * 4

ZONES = r"""
    local-zone: "remote.test." static
    local-data: "remote.test. 60 IN SOA ns.remote.test. hostmaster.remote.test. 1 600 60 3600 60"
    local-data: "remote.test. 60 IN MX 20 mx2.remote.test."
    local-data: "remote.test. 60 IN MX 10 mx.remote.test."
    local-data: "remote.test. 60 IN MX 30 backup.remote.test."
    local-data: "mx.remote.test. 60 IN A 127.0.0.20"
    local-data: "mx.remote.test. 60 IN AAAA fd00::25"
    local-data: "mx2.remote.test. 60 IN A 127.0.0.21"
    local-data: "mx2.remote.test. 60 IN A 127.0.0.22"
    local-data: "backup.remote.test. 60 IN A 127.0.0.23"
    local-data: 'remote.test. 60 IN TXT "v=spf1 ip4:127.0.0.0/24 -all"'
    local-data: 'big.remote.test. 60 IN TXT "v=DKIM1; k=rsa; p=MIIB" "IjANBg"'
    local-data: 'multi.remote.test. 60 IN TXT "first"'
    local-data: 'multi.remote.test. 60 IN TXT "second"'
    local-data: "_25._tcp.mx.remote.test. 60 IN TLSA 3 1 1 %(tlsa)s"
    local-data: "host.remote.test. 60 IN A 127.0.0.30"
    local-data: "alias.remote.test. 60 IN CNAME mx.remote.test."
    local-zone: "equal.test." static
    local-data: "equal.test. 60 IN MX 10 a.equal.test."
    local-data: "equal.test. 60 IN MX 10 b.equal.test."
    local-data: "equal.test. 60 IN MX 10 c.equal.test."
    local-data: "equal.test. 60 IN MX 5 first.equal.test."
    local-zone: "nullmx.test." static
    local-data: "nullmx.test. 60 IN MX 0 ."
    local-zone: "0.0.127.in-addr.arpa." static
    local-data-ptr: "127.0.0.20 mx.remote.test."
    local-zone: "10.in-addr.arpa." static
    local-data-ptr: "10.1.2.3 relay.remote.test."
    local-zone: "d.f.ip6.arpa." static
    local-data-ptr: "fd00::25 mx.remote.test."
    local-zone: "home.arpa." static
    local-data: "printer.home.arpa. 60 IN A 127.0.0.31"
    local-zone: "invalid." static
    local-data: "lab.invalid. 60 IN A 127.0.0.32"
    local-zone: "onion." static
    local-data: "hidden.onion. 60 IN A 127.0.0.33"
    local-zone: "signed.example." static
    local-data: "www.signed.example. 60 IN A 127.0.0.40"
    local-zone: "." static
""" % {"tlsa": TLSA_HEX}

@pytest.fixture(scope="module")
def unbound():
    """A real unbound on a free loopback port holding the test zones; yields
    "127.0.0.1@PORT"."""
    with peers.unbound(ZONES, "remote.test") as addr:
        yield addr


def lookup(qtype, name, resolver, *extra, insecure=True, conf="/nonexistent/kurier.conf",
           timeout=30):
    argv = [KURIER, "-c", conf, "dns", "lookup", qtype, name]
    if resolver:
        argv += ["--resolver", resolver]
    if insecure:
        argv += ["--insecure", "test."]
    argv += list(extra)
    r = subprocess.run(argv, capture_output=True, timeout=timeout)
    out = r.stdout.decode(errors="replace").splitlines()
    # The TTL line is informational; tests look at the records and status lines.
    return r.returncode, [l for l in out if not l.startswith("ttl ")], r.stderr.decode()


def test_mx_sorted_by_preference(unbound):
    rc, out, err = lookup("mx", "remote.test", unbound)
    assert rc == 0, err
    assert out == ["mx 10 mx.remote.test", "mx 20 mx2.remote.test",
                   "mx 30 backup.remote.test"]


def test_mx_equal_preferences_shuffled(unbound):
    firsts = set()
    for _ in range(25):
        rc, out, err = lookup("mx", "equal.test", unbound)
        assert rc == 0, err
        assert out[0] == "mx 5 first.equal.test"
        assert sorted(out[1:]) == ["mx 10 a.equal.test", "mx 10 b.equal.test",
                                   "mx 10 c.equal.test"]
        firsts.add(out[1])
        if len(firsts) == 3:
            break
    assert len(firsts) >= 2, firsts  # 25 runs all equal: 3 * (1/3)^24, never


def test_null_mx(unbound):
    rc, out, _ = lookup("mx", "nullmx.test", unbound)
    assert out == ["nullmx"]
    assert rc == 0


def test_a_and_aaaa(unbound):
    rc, out, err = lookup("a", "mx2.remote.test", unbound)
    assert rc == 0, err
    assert sorted(out) == ["a 127.0.0.21", "a 127.0.0.22"]
    rc, out, _ = lookup("aaaa", "mx.remote.test", unbound)
    assert (rc, out) == (0, ["aaaa fd00::25"])


def test_cname_followed(unbound):
    rc, out, _ = lookup("a", "alias.remote.test", unbound)
    assert (rc, out) == (0, ["a 127.0.0.20"])


def test_txt_strings_joined(unbound):
    rc, out, _ = lookup("txt", "remote.test", unbound)
    assert (rc, out) == (0, ["txt v=spf1 ip4:127.0.0.0/24 -all"])
    rc, out, _ = lookup("txt", "big.remote.test", unbound)
    assert (rc, out) == (0, ["txt v=DKIM1; k=rsa; p=MIIBIjANBg"])
    rc, out, _ = lookup("txt", "multi.remote.test", unbound)
    assert rc == 0 and sorted(out) == ["txt first", "txt second"]


def test_ptr(unbound):
    rc, out, _ = lookup("ptr", "127.0.0.20", unbound)
    assert (rc, out) == (0, ["ptr mx.remote.test"])
    # Private ranges reach the forwarder (libunbound's empty LAN zones are lifted).
    rc, out, _ = lookup("ptr", "10.1.2.3", unbound)
    assert (rc, out) == (0, ["ptr relay.remote.test"])
    rc, out, _ = lookup("ptr", "fd00::25", unbound)
    assert (rc, out) == (0, ["ptr mx.remote.test"])
    rc, out, _ = lookup("ptr", "127.0.0.99", unbound)
    assert (rc, out) == (1, ["nxdomain"])


def test_tlsa(unbound):
    rc, out, _ = lookup("tlsa", "mx.remote.test", unbound)
    assert (rc, out) == (0, ["tlsa 3 1 1 " + TLSA_HEX])
    rc, out, _ = lookup("tlsa", "mx.remote.test", unbound, "--port", "587")
    assert (rc, out) == (1, ["nxdomain"])


def test_nxdomain_and_nodata(unbound):
    rc, out, _ = lookup("mx", "nothing.remote.test", unbound)
    assert (rc, out) == (1, ["nxdomain"])
    rc, out, _ = lookup("a", "no-such-zone.test", unbound)
    assert (rc, out) == (1, ["nxdomain"])
    # host.remote.test has an A record but no MX: NODATA, not NXDOMAIN.
    rc, out, _ = lookup("mx", "host.remote.test", unbound)
    assert (rc, out) == (1, ["nodata"])
    rc, out, _ = lookup("aaaa", "host.remote.test", unbound)
    assert (rc, out) == (1, ["nodata"])


def test_lookup_json(unbound):
    """--json: one object with the documented fields (docs/json.md)."""
    import json
    rc, out, err = lookup("mx", "remote.test", unbound, "--json")
    assert rc == 0, err
    assert len(out) == 1
    j = json.loads(out[0])
    assert (j["name"], j["type"], j["status"], j["null_mx"]) == ("remote.test", "mx", "ok", False)
    assert isinstance(j["ttl"], int) and j["secure"] is False and j["why"] is None
    assert j["records"] == [{"type": "mx", "pref": 10, "host": "mx.remote.test"},
                            {"type": "mx", "pref": 20, "host": "mx2.remote.test"},
                            {"type": "mx", "pref": 30, "host": "backup.remote.test"}]
    rc, out, _ = lookup("a", "mx2.remote.test", unbound, "--json")
    assert {r["type"] for r in json.loads(out[0])["records"]} == {"a"}
    rc, out, _ = lookup("tlsa", "mx.remote.test", unbound, "--json")
    t = json.loads(out[0])["records"][0]
    assert (t["type"], t["usage"], t["selector"], t["mtype"]) == ("tlsa", 3, 1, 1)
    assert t["data"] == TLSA_HEX.lower()
    rc, out, _ = lookup("mx", "nothing.remote.test", unbound, "--json")
    assert rc == 1
    j = json.loads(out[0])
    assert (j["status"], j["records"]) == ("nxdomain", [])


# Issue 9 item 16: names libunbound answers itself (built-in empty zones for test.,
# home.arpa., onion., invalid., private and loopback reverse zones) must reach the
# resolver kurier forwards to, with no --insecure given: that resolver is the admin's.
SPECIAL_NAMES = [
    ("mx", "remote.test", ["mx 10 mx.remote.test", "mx 20 mx2.remote.test",
                           "mx 30 backup.remote.test"]),
    ("a", "printer.home.arpa", ["a 127.0.0.31"]),
    ("a", "lab.invalid", ["a 127.0.0.32"]),
    ("a", "hidden.onion", ["a 127.0.0.33"]),
    ("ptr", "10.1.2.3", ["ptr relay.remote.test"]),
    ("ptr", "127.0.0.20", ["ptr mx.remote.test"]),
]


def test_special_names_reach_the_configured_resolver(unbound, tmp_path):
    conf = tmp_path / "kurier.conf"
    conf.write_text("hostname mx.example.test;\nstate_dir %s;\nresolver %s;\n"
                    % (tmp_path, unbound))
    for qtype, name, want in SPECIAL_NAMES:
        rc, out, err = lookup(qtype, name, None, insecure=False, conf=str(conf))
        assert (rc, out) == (0, want), (name, err)
    # localhost stays libunbound's own
    rc, out, err = lookup("a", "localhost", None, insecure=False, conf=str(conf))
    assert (rc, out) == (0, ["a 127.0.0.1"]), err


def test_special_names_reach_the_resolv_conf_resolver(tmp_path):
    """No resolver in kurier.conf: the one in /etc/resolv.conf gets every name. The
    command runs in its own mount namespace with a resolv.conf bound over the
    system's, naming an unbound on port 53 of a loopback address of its own."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and unshare -m to replace /etc/resolv.conf")
    host = "127.53.%d.%d" % (random.randint(1, 254), random.randint(1, 254))
    with peers.unbound(ZONES, "remote.test", host=host, port=53):
        resolv = tmp_path / "resolv.conf"
        resolv.write_text("nameserver %s\n" % host)
        conf = tmp_path / "kurier.conf"
        conf.write_text("hostname mx.example.test;\nstate_dir %s;\n" % tmp_path)
        for qtype, name, want in SPECIAL_NAMES:
            argv = ["unshare", "-m", "sh", "-c",
                    'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv),
                    KURIER, "-c", str(conf), "dns", "lookup", qtype, name]
            r = subprocess.run(argv, capture_output=True, timeout=30)
            out = [l for l in r.stdout.decode().splitlines() if not l.startswith("ttl ")]
            assert (r.returncode, out) == (0, want), (name, r.stderr)


def test_invalid_names(unbound):
    rc, out, _ = lookup("mx", "a..b", unbound)
    assert (rc, out) == (1, ["nxdomain"])
    rc, out, _ = lookup("a", "x" * 64 + ".test", unbound)
    assert (rc, out) == (1, ["nxdomain"])


def test_usage_errors():
    for argv in (["dns"], ["dns", "lookup", "mx"], ["dns", "lookup", "soa", "x.test"],
                 ["dns", "lookup", "ptr", "not-an-ip"], ["dns", "lookup", "a", "x", "--bogus"]):
        r = subprocess.run([KURIER, "-c", "/nonexistent"] + argv, capture_output=True,
                           timeout=10)
        assert r.returncode == 2, argv


def test_bad_resolver_address():
    r = subprocess.run([KURIER, "-c", "/nonexistent", "dns", "lookup", "a", "x.test",
                        "--resolver", "not-an-address"], capture_output=True, timeout=10)
    assert r.returncode == 1
    assert b"not-an-address" in r.stderr


def test_resolver_from_config(unbound, tmp_path):
    conf = tmp_path / "kurier.conf"
    conf.write_text("hostname mx.example.test;\nstate_dir %s;\nresolver %s;\n"
                    % (tmp_path, unbound))
    rc, out, err = lookup("a", "mx.remote.test", None, conf=str(conf))
    assert (rc, out) == (0, ["a 127.0.0.20"]), err


class FakeServer:
    """A UDP "DNS server" that answers every query with SERVFAIL, or never."""

    def __init__(self, mode):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.queries = 0
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if self.mode == "servfail" and len(data) >= 12:
                flags = (0x8000 | (data[2] & 0x79) << 8 | 0x80 | 2)  # QR, opcode, RD, RA, rcode
                end = 12
                while end < len(data) and data[end]:
                    end += 1 + data[end]
                question = data[12:end + 5]  # the name, its root byte, type, class
                self.sock.sendto(data[:2] + flags.to_bytes(2, "big") + b"\x00\x01"
                                 + b"\x00\x00\x00\x00\x00\x00" + question, peer)

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()


def test_servfail_is_tempfail():
    srv = FakeServer("servfail")
    try:
        t0 = time.time()
        rc, out, err = lookup("mx", "remote.test", "127.0.0.1@%d" % srv.port, "--timeout", "20")
        assert rc == 1, err
        assert out == ["tempfail: SERVFAIL"], out
        assert srv.queries >= 1
        assert time.time() - t0 < 20
    finally:
        srv.close()


def test_timeout_is_tempfail():
    srv = FakeServer("silent")
    try:
        t0 = time.time()
        rc, out, _ = lookup("a", "mx.remote.test", "127.0.0.1@%d" % srv.port, "--timeout", "2")
        took = time.time() - t0
        assert (rc, out) == (1, ["tempfail: timeout"])
        assert 1.5 < took < 10, took
        assert srv.queries >= 1
    finally:
        srv.close()


def test_dnssec_bogus(unbound, tmp_path):
    # A trust anchor for signed.example whose key the server never shows: every
    # answer below it fails validation.
    ta = tmp_path / "anchor.key"
    ta.write_text("signed.example. IN DS 12345 13 2 %s\n" % ("ab" * 32))
    rc, out, err = lookup("a", "www.signed.example", unbound, "--trust-anchor", str(ta),
                          insecure=False)
    assert (rc, out) == (1, ["bogus: DNSSEC validation failed"]), err
    # Outside the anchored zone nothing changes (test. is declared insecure).
    rc, out, err = lookup("a", "mx.remote.test", unbound, "--trust-anchor", str(ta))
    assert (rc, out) == (0, ["a 127.0.0.20"]), err
