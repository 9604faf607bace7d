"""SPF (RFC 7208): the whole OpenSPF RFC 7208 test suite (tests/data/spf/) through
`kurier spf check`, each section's zone served by a real DNS server on loopback
(spfdns.py), one case per test. Cases whose expected result is a list pass with
any of them (the suite's rule)."""

import os
import subprocess

import pytest
import yaml

from conftest import SAFETY, free_port
from spfdns import SpfDNS

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = os.path.join(HERE, "..", "data", "spf", "rfc7208-tests.yml")
BUILD = os.environ.get("KURIER_BUILD", os.path.join(HERE, "..", "..", "build"))
# Reverse zones libunbound would answer itself (documentation and private ranges).
INSECURE = ["2.0.192.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa", "in-addr.arpa", "ip6.arpa"]


def load_suite():
    with open(SUITE, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    cases = []
    for i, doc in enumerate(docs):
        for name, t in doc["tests"].items():
            cases.append(pytest.param(i, name, t, id="%d-%s" % (i, name)))
    return docs, cases


DOCS, CASES = load_suite()


@pytest.fixture(scope="module")
def spfdns():
    srv = SpfDNS(free_port())
    srv.start()
    srv.current = None
    yield srv
    srv.stop()


def spf_check(dns, host, mailfrom, helo):
    argv = [os.path.join(BUILD, "kurier"), "spf", "check", host, mailfrom, "--helo", helo,
            "--resolver", "127.0.0.1@%d" % dns.port, "--timeout", "2"]
    for z in INSECURE:
        argv += ["--insecure", z]
    p = subprocess.run(argv, capture_output=True, timeout=SAFETY,
                       env=dict(os.environ, KURIER_CONF="/nonexistent"))
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    lines = p.stdout.decode().splitlines()
    return lines[0], lines[1] if len(lines) > 1 else ""


@pytest.mark.parametrize("section,name,t", CASES)
def test_rfc7208_suite(spfdns, section, name, t):
    if spfdns.current != section:
        spfdns.load(DOCS[section].get("zonedata"))
        spfdns.current = section
    result, second = spf_check(spfdns, t["host"], t["mailfrom"], t["helo"])
    want = t["result"] if isinstance(t["result"], list) else [t["result"]]
    assert result in want, "%s: got %s (%s), want %s" % (name, result, second, want)
    if "explanation" in t and result == "fail":
        if t["explanation"] == "DEFAULT":
            assert second.startswith("reason: "), second
        else:
            assert second == "explanation: " + t["explanation"], second
