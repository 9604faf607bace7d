#!/usr/bin/python3
"""kurier rbl check (issue 12 item 6): one address or domain against many DNS lists at
once, as mxtoolbox's blacklist check does. A real rbldnsd on loopback serves test
lists (and one named zen.spamhaus.org, so the built-in table's delisting page and
Spamhaus's refusal codes are exercised); the command reaches it through the
config's resolver. Listed, not listed, refused and error per list; IPv4, IPv6 and a
domain; exit 0 clean, 1 listed, 2 unknown; --json parsed by json.loads."""

import json

import pytest

from peers import rbldnsd

BL_ZONE = """$SOA 60 bl.test. hostmaster.bl.test. 1 600 60 3600 60
$NS 60 ns.bl.test.
:127.0.0.2:Listed in bl.test, see https://bl.test/lookup?ip=$
127.0.0.9
127.0.0.10 :127.0.0.4:Listed for a weaker reason
127.0.0.14 :127.255.255.254:Query refused: open resolver
127.0.0.15 :192.0.2.1:Wildcard junk
"""
OTHER_ZONE = """$SOA 60 other.test. hostmaster.other.test. 1 600 60 3600 60
$NS 60 ns.other.test.
:127.0.0.3:Listed in other.test
127.0.0.10
"""
BL6_ZONE = """$SOA 60 bl6.test. hostmaster.bl6.test. 1 600 60 3600 60
$NS 60 ns.bl6.test.
:127.0.0.2:Listed in bl6.test: $
2001:db8::25
"""
DBL_ZONE = """$SOA 60 dbl.test. hostmaster.dbl.test. 1 600 60 3600 60
$NS 60 ns.dbl.test.
:127.0.1.2:Domain listed: $
bad.example
"""
ZEN_ZONE = """$SOA 60 zen.spamhaus.org. hostmaster.zen.spamhaus.org. 1 600 60 3600 60
$NS 60 ns.zen.spamhaus.org.
:127.0.0.2:https://www.spamhaus.org/query/ip/$
127.0.0.9
127.0.0.14 :127.255.255.254:Query refused
"""


@pytest.fixture(scope="module")
def lists():
    with rbldnsd({"bl.test": ("ip4set", BL_ZONE), "other.test": ("ip4set", OTHER_ZONE),
                  "bl6.test": ("ip6trie", BL6_ZONE), "dbl.test": ("dnset", DBL_ZONE),
                  "zen.spamhaus.org": ("ip4set", ZEN_ZONE)}, "bl.test") as addr:
        yield addr


@pytest.fixture
def k(kurier_factory, lists):
    return kurier_factory(extra="resolver %s;\n"
                                "rbl_lists bl.test other.test;\n"
                                "rbl_lists bl6.test;\n"
                                "rbl_domain_lists dbl.test;\n" % lists)


def rbl(k, *args):
    r = k.cli("rbl", "check", *args, check=False)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def check_json(k, *args):
    rc, out, err = rbl(k, *args, "--json")
    doc = json.loads(out)
    return rc, doc, {x["list"]: x for x in doc["results"]}


def test_listed_ipv4_prints_codes_txt_and_exit_1(k):
    rc, out, err = rbl(k, "127.0.0.9", "--list", "bl.test", "--list", "other.test")
    assert rc == 1, (out, err)
    assert "127.0.0.9 against 2 lists:" in out
    assert "bl.test     listed (127.0.0.2)" in out, out
    assert "txt: Listed in bl.test, see https://bl.test/lookup?ip=127.0.0.9" in out, out
    assert "other.test  not listed" in out, out
    assert "1 listed, 1 not listed, 0 refused, 0 errors" in out


def test_not_listed_anywhere_exits_0(k):
    rc, out, err = rbl(k, "127.0.0.20", "--list", "bl.test", "--list", "other.test")
    assert rc == 0, (out, err)
    assert "0 listed, 2 not listed, 0 refused, 0 errors" in out, out


@pytest.mark.parametrize("ip,code", [("127.0.0.14", "127.255.255.254"), ("127.0.0.15", "192.0.2.1")])
def test_refusal_codes_are_refused_never_listed(k, ip, code):
    rc, out, err = rbl(k, ip, "--list", "bl.test")
    assert rc == 2, (out, err)  # the answer is unknown, not clean
    assert "bl.test  refused (%s): the list refused to answer this resolver" % code in out, out
    rc, doc, res = check_json(k, ip, "--list", "bl.test")
    assert res["bl.test"]["status"] == "refused" and res["bl.test"]["codes"] == [code]
    assert doc["listed"] == 0 and doc["refused"] == 1


def test_a_filter_limits_the_codes_that_count(k):
    # 127.0.0.10 answers 127.0.0.4 in bl.test: a filter for .2 only ignores it
    rc, out, err = rbl(k, "127.0.0.10", "--list", "bl.test=127.0.0.2", "--list", "other.test")
    assert rc == 1, (out, err)
    rc, doc, res = check_json(k, "127.0.0.10", "--list", "bl.test=127.0.0.2")
    assert rc == 0 and res["bl.test"]["status"] == "not listed", doc
    assert res["bl.test"]["codes"] == ["127.0.0.4"]


def test_ipv6_nibbles(k):
    rc, doc, res = check_json(k, "2001:db8::25", "--list", "bl6.test")
    assert rc == 1 and res["bl6.test"]["status"] == "listed", doc
    assert res["bl6.test"]["txt"] == "Listed in bl6.test: 2001:db8::25"
    assert doc["kind"] == "ip"
    rc, doc, res = check_json(k, "2001:db8::26", "--list", "bl6.test")
    assert rc == 0 and res["bl6.test"]["status"] == "not listed", doc


def test_domain(k):
    rc, out, err = rbl(k, "bad.example", "--list", "dbl.test")
    assert rc == 1 and "dbl.test  listed (127.0.1.2)" in out, (out, err)
    assert "txt: Domain listed: bad.example" in out
    rc, doc, res = check_json(k, "good.example", "--list", "dbl.test")
    assert rc == 0 and doc["kind"] == "domain" and res["dbl.test"]["status"] == "not listed"


def test_configured_lists_by_kind_and_json(k):
    # without --list: rbl_lists for addresses (repeated lines add up) ...
    rc, doc, res = check_json(k, "127.0.0.10")
    assert rc == 1, doc
    assert list(res) == ["bl.test", "other.test", "bl6.test"], doc
    assert res["bl.test"]["status"] == "listed" and res["bl.test"]["codes"] == ["127.0.0.4"]
    assert res["bl.test"]["txt"] == "Listed for a weaker reason"
    assert res["other.test"]["status"] == "listed" and res["other.test"]["name"] is None
    assert res["bl6.test"]["status"] == "not listed" and res["bl6.test"]["txt"] is None
    assert doc["subject"] == "127.0.0.10" and doc["listed"] == 2 and doc["not_listed"] == 1
    # ... and rbl_domain_lists for domains
    rc, doc, res = check_json(k, "bad.example")
    assert rc == 1 and list(res) == ["dbl.test"], doc


def test_builtin_list_gives_its_delisting_page_and_spamhaus_refusals(k):
    rc, doc, res = check_json(k, "127.0.0.9", "--list", "zen.spamhaus.org")
    z = res["zen.spamhaus.org"]
    assert rc == 1 and z["status"] == "listed" and z["name"] == "Spamhaus ZEN", doc
    assert z["delist"] == "https://check.spamhaus.org/results/?query=127.0.0.9"
    assert z["txt"] == "https://www.spamhaus.org/query/ip/127.0.0.9"
    rc, out, err = rbl(k, "127.0.0.9", "--list", "zen.spamhaus.org")
    assert "delist: https://check.spamhaus.org/results/?query=127.0.0.9" in out, out
    rc, doc, res = check_json(k, "127.0.0.14", "--list", "zen.spamhaus.org")
    assert rc == 2 and res["zen.spamhaus.org"]["status"] == "refused", doc
    assert res["zen.spamhaus.org"]["delist"] is None


def test_dns_failure_is_an_error_exit_2(k):
    # rbldnsd refuses names outside its zones: the resolver reports a failure
    rc, doc, res = check_json(k, "127.0.0.9", "--list", "bl.test", "--list", "nowhere.invalid")
    assert rc == 1, doc  # listed somewhere wins over an error elsewhere
    assert res["nowhere.invalid"]["status"] == "error" and res["nowhere.invalid"]["error"], doc
    rc, doc, res = check_json(k, "127.0.0.20", "--list", "nowhere.invalid")
    assert rc == 2 and doc["errors"] == 1, doc
    rc, out, err = rbl(k, "127.0.0.20", "--list", "nowhere.invalid")
    assert "nowhere.invalid  error: " in out, out


@pytest.mark.parametrize("args,msg", [
    (["not an address"], 'is not an IPv4 or IPv6 address or a domain name'),
    (["127.0.0.1", "--list", "bl.test=999.0.0.1"], 'list "bl.test=999.0.0.1"'),
    ([], "usage: kurier rbl check"),
])
def test_bad_arguments(k, args, msg):
    rc, out, err = rbl(k, *args)
    assert rc == 2 and msg in err, (out, err)


def test_lists_prints_the_builtin_table(k):
    out = k.cli("rbl", "lists").stdout.decode()
    for zone in ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org",
                 "psbl.surriel.com", "dbl.spamhaus.org"):
        assert zone in out, out
