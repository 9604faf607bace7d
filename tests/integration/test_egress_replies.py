#!/usr/bin/python3
"""The egress reply classifier from the outside (issue 12 item 2): "kurier replies
classify" prints the class of a remote reply and the rule (FILE:LINE) that decided
it, with the shipped rules file; a bad rules file is named with its line by the
command, stops kurierd at start, and on SIGHUP leaves the rules loaded before in use.
The classification itself is table-tested in tests/unit/test_replies.c."""

import os
import re
import signal
import subprocess

import pytest

from conftest import KURIERD, SAFETY

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(ROOT, "data", "replies.rules")


def classify(k, *args):
    r = k.cli("replies", "classify", *args, check=False)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def rule_line(pattern):
    """The line number of the first rule in the shipped file containing pattern."""
    with open(RULES) as f:
        for n, line in enumerate(f, 1):
            if not line.startswith("#") and pattern in line:
                return n
    raise AssertionError(pattern)


@pytest.fixture
def k(kurier_factory):
    return kurier_factory()


@pytest.mark.parametrize("reply,cls,pattern", [
    ("554 Blocked - see https://ipcheck.proofpoint.com/?ip=81.28.224.28", "ip-blocklist",
     "ipcheck"),
    ("550 Your server IP address is listed in the SpamCop database", "ip-blocklist", "spamcop"),
    ("550 5.7.0 Your server IP address is in the SpamHaus SBL-XBL database, bye", "ip-blocklist",
     "spamhaus|spamcop"),
    ("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
     "b.barracudacentral.org", "ip-blocklist", "barracudacentral"),
    ("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume "
     "or user complaints", "ip-reputation-temporary", "TSS?"),
    ("550-5.1.1 The email account that you tried to reach does not exist.", "user-unknown",
     "account that you tried to reach (does not exist"),
])
def test_classify_prints_class_and_rule(k, reply, cls, pattern):
    rc, out, err = classify(k, "--rules", RULES, reply)
    assert rc == 0, (out, err)
    assert out.splitlines()[0] == "class: " + cls, out
    assert out.splitlines()[1].startswith("rule: %s:%d: %s " % (RULES, rule_line(pattern), cls)), out


def test_code_and_enhanced_code_apart_or_unquoted(k):
    rc, out, err = classify(k, "--rules", RULES, "--code", "552", "--enh", "5.2.2",
                            "user is over quota")
    assert rc == 0 and out.startswith("class: mailbox-full\n"), (out, err)
    # words as separate arguments are one text
    rc, out, err = classify(k, "--rules", RULES, "452", "4.2.2", "Mailbox", "full")
    assert out.startswith("class: mailbox-full\n"), out
    # no rule: the enhanced code decides the obvious cases
    rc, out, err = classify(k, "--rules", RULES, "550 5.1.1 gone")
    assert out == "class: user-unknown\nrule: %s:%d: user-unknown  enh=x.1.1,x.1.10,x.1.6\n" % (
        RULES, rule_line("enh=x.1.1")), out
    rc, out, err = classify(k, "--rules", RULES, "250 2.0.0 Ok")
    assert rc == 0 and out == "class: other\nrule: none in %s (nothing matched)\n" % RULES, out


def test_rules_from_the_config(k, tmp_path):
    mine = tmp_path / "my.rules"
    mine.write_text("# mine\nrate-limit \"slow down\"\n")
    with open(k.conf, "a") as f:
        f.write("reply_rules %s;\n" % mine)
    rc, out, err = classify(k, "421 please slow down")
    assert rc == 0 and out == "class: rate-limit\nrule: %s:2: rate-limit \"slow down\"\n" % mine, \
        (out, err)
    r = k.cli("replies", "check")
    assert r.stdout.decode() == "%s: 1 rules, ok\n" % mine


def test_bad_rules_file_names_file_and_line(k, tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("# fine so far\nip-blocklist /spamhaus/\npolicy /unclosed(/\n")
    rc, out, err = classify(k, "--rules", str(bad), "550 whatever")
    assert rc == 1 and out == "", (out, err)
    assert err.startswith("kurier: %s:3: bad regex /unclosed(/: " % bad), err
    r = k.cli("replies", "check", str(bad), check=False)
    assert r.returncode == 1 and "%s:3: bad regex" % bad in r.stderr.decode()
    bad.write_text("blocked \"x\"\n")
    r = k.cli("replies", "check", str(bad), check=False)
    assert r.returncode == 1 and '%s:1: unknown class "blocked"' % bad in r.stderr.decode()
    r = k.cli("replies", "check", str(tmp_path / "missing.rules"), check=False)
    assert r.returncode == 1 and "missing.rules: No such file or directory" in r.stderr.decode()


def test_shipped_rules_check(k):
    r = k.cli("replies", "check", RULES)
    assert re.match(r"^%s: \d+ rules, ok\n$" % re.escape(RULES), r.stdout.decode())


def test_daemon_refuses_to_start_with_a_bad_rules_file(k):
    bad = os.path.join(k.dir, "bad.rules")
    with open(bad, "w") as f:
        f.write("greylist /greylist/\n\nsize enh=5.3\n")
    with open(k.conf, "a") as f:
        f.write("reply_rules %s;\n" % bad)
    r = subprocess.run([KURIERD, "-c", k.conf], capture_output=True, timeout=SAFETY)
    assert r.returncode == 1
    assert '%s:3: bad enh="5.3"' % bad in r.stderr.decode(), r.stderr.decode()
    r = subprocess.run([KURIERD, "-t", "-c", k.conf], capture_output=True, timeout=SAFETY)
    assert r.returncode == 1 and "bad.rules:3:" in r.stderr.decode()


def test_reload_keeps_the_old_rules_when_the_new_file_is_bad(k):
    path = os.path.join(k.dir, "replies.rules")
    with open(RULES) as src, open(path, "w") as f:
        f.write(src.read())
    os.chmod(path, 0o644)
    with open(k.conf, "a") as f:
        f.write("reply_rules %s;\n" % path)
    k.start()
    m = re.search(r"reply rules: (\d+) rules loaded from (\S+)", k.log())
    assert m and int(m.group(1)) > 50 and m.group(2) == path, k.log()[-2000:]
    before = k.log().count("rules loaded from")
    with open(path, "w") as f:
        f.write("greylist /greylist/\npolicy \"spam\" bogus\n")
    k.proc.send_signal(signal.SIGHUP)
    k.wait_log("reloaded configuration")
    log = k.log()
    assert re.search(r"reload: reply rules kept as loaded before: \S*replies\.rules:2: "
                     r"unknown condition \"bogus\"", log), log[-2000:]
    assert log.count("rules loaded from") == before
    # a good file again is taken on the next reload
    with open(path, "w") as f:
        f.write("greylist /greylist/\n")
    k.proc.send_signal(signal.SIGHUP)
    k.wait_log("reply rules: 1 rules loaded from")
    assert k.proc.poll() is None
