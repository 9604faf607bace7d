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
SUITE_4408 = os.path.join(HERE, "..", "data", "spf", "rfc4408-tests.yml")
BUILD = os.environ.get("KURIER_BUILD", os.path.join(HERE, "..", "..", "build"))
# Reverse zones libunbound would answer itself (documentation and private ranges).
INSECURE = ["2.0.192.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa", "in-addr.arpa", "ip6.arpa"]


# The cases kurier does not pass, and why (docs/inbound.md "SPF").
KNOWN = {
    "null-text": "a TXT record with no strings (zero-length rdata, not allowed by "
                 "RFC 1035) next to the SPF record: libunbound refuses the whole "
                 "answer (SERVFAIL), so the evaluator sees temperror",
}


def load_suite(path, prefix):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    cases = []
    for i, doc in enumerate(docs):
        for name, t in doc["tests"].items():
            known = KNOWN.get(name) if not prefix else None
            marks = [pytest.mark.xfail(reason=known, strict=True)] if known else []
            cases.append(pytest.param(doc, name, t, id="%s%d-%s" % (prefix, i, name),
                                      marks=marks))
    return cases


CASES = load_suite(SUITE, "")
# The older RFC 4408 suite as an extra regression check (where they disagree, the
# RFC 7208 one wins; today kurier passes both).
CASES_4408 = load_suite(SUITE_4408, "rfc4408-")


@pytest.fixture(scope="module")
def spfdns():
    srv = SpfDNS(free_port())
    srv.start()
    srv.current = None
    yield srv
    srv.stop()


def spf_check(dns, host, mailfrom, helo, *extra):
    argv = [os.path.join(BUILD, "kurier"), "spf", "check", host, mailfrom, "--helo", helo,
            "--resolver", "127.0.0.1@%d" % dns.port, "--timeout", "2", *extra]
    for z in INSECURE:
        argv += ["--insecure", z]
    p = subprocess.run(argv, capture_output=True, timeout=SAFETY,
                       env=dict(os.environ, KURIER_CONF="/nonexistent"))
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    lines = p.stdout.decode().splitlines()
    if extra:
        return lines
    return lines[0], lines[1] if len(lines) > 1 else ""


def run_case(spfdns, section, name, t):
    if spfdns.current is not section:
        spfdns.load(section.get("zonedata"))
        spfdns.current = section
    result, second = spf_check(spfdns, t["host"], t["mailfrom"], t["helo"])
    want = t["result"] if isinstance(t["result"], list) else [t["result"]]
    assert result in want, "%s: got %s (%s), want %s" % (name, result, second, want)
    if "explanation" in t and result == "fail":
        if t["explanation"] == "DEFAULT":
            assert second.startswith("reason: "), second
        else:
            assert second == "explanation: " + t["explanation"], second


@pytest.mark.parametrize("section,name,t", CASES)
def test_rfc7208_suite(spfdns, section, name, t):
    run_case(spfdns, section, name, t)


@pytest.mark.parametrize("section,name,t", CASES_4408)
def test_rfc4408_suite(spfdns, section, name, t):
    run_case(spfdns, section, name, t)


def test_spf_check_bad_arguments():
    """Bad input gets a clear message and exit status 2."""
    kurier = os.path.join(BUILD, "kurier")
    p = subprocess.run([kurier, "spf", "check", "192.0.2.300", "a@example.com"],
                       capture_output=True, text=True, timeout=SAFETY)
    assert p.returncode == 2 and "not an IP address" in p.stderr
    p = subprocess.run([kurier, "spf", "check", "192.0.2.3", ""], capture_output=True,
                       text=True, timeout=SAFETY)
    assert p.returncode == 2 and "null sender needs --helo" in p.stderr
    p = subprocess.run([kurier, "spf", "frobnicate"], capture_output=True, text=True,
                       timeout=SAFETY)
    assert p.returncode == 2 and "usage: kurier spf check" in p.stderr


def test_spf_check_null_sender_and_limits(spfdns):
    """The null sender is checked as postmaster@HELO; an include loop ends in
    permerror at the 10-lookup limit instead of looping; a sender whose record has a
    typo gets permerror with the reason."""
    spfdns.current = None
    spfdns.load({
        "helo.example.org": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
        "loop.example.org": [{"TXT": "v=spf1 include:loop.example.org -all"}],
        "typo.example.org": [{"TXT": "v=spf1 ip4:192.0.2.300 -all"}],
        "exp.example.org": [{"TXT": "v=spf1 -all exp=why.example.org"}],
        "why.example.org": [{"TXT": "%{i} may not send for %{d}, ask %{l}"}],
    })
    assert spf_check(spfdns, "192.0.2.7", "", "helo.example.org")[0] == "pass"
    assert spf_check(spfdns, "198.51.100.7", "", "helo.example.org")[0] == "fail"
    res, why = spf_check(spfdns, "192.0.2.7", "a@loop.example.org", "h.example.org")
    assert res == "permerror" and "more than 10 DNS lookups" in why, why
    res, why = spf_check(spfdns, "192.0.2.7", "a@typo.example.org", "h.example.org")
    assert res == "permerror" and "bad address" in why, why
    res, why = spf_check(spfdns, "192.0.2.7", "bob@exp.example.org", "h.example.org")
    assert (res, why) == ("fail", "explanation: 192.0.2.7 may not send for exp.example.org, "
                                  "ask bob")
    lines = spf_check(spfdns, "192.0.2.7", "bob@exp.example.org", "h.example.org",
                      "--header", "--receiver", "mx.example.net")
    assert lines[2:] == [
        "Received-SPF: fail (mx.example.net: 192.0.2.7 may not send for exp.example.org, ask bob)",
        "\treceiver=mx.example.net; client-ip=192.0.2.7; envelope-from=\"bob@exp.example.org\";"
        " helo=\"h.example.org\"; identity=mailfrom"], lines
