#!/usr/bin/python3
"""Local system mail, as every MTA delivers it: cron's and sendmail's mail to root,
postmaster, MAILER-DAEMON, abuse and other local names goes through an aliases file
in /etc/aliases format to the admin's mailbox, never to the smarthost; a bounce to a
local sender comes back the same way; newaliases checks the file (errors name file
and line) and makes the running kurierd read it again."""

import os
import re
import subprocess

import pytest

import peers
from conftest import BUILD, SAFETY

SENDMAIL = os.path.join(BUILD, "sendmail")
NEWALIASES = os.path.join(BUILD, "newaliases")

ALIASES = """\
# /etc/aliases as Debian ships it, plus ours
postmaster:    root
MAILER-DAEMON: postmaster
abuse:         abuse, root
root:          admin@example.test,
               ops
ops:           ops@example.test
"""


def run(k, prog, *args, input=b""):
    env = dict(os.environ, KURIER_CONF=k.conf)
    return subprocess.run([prog] + list(args), input=input, capture_output=True,
                          timeout=SAFETY, env=env)


class Smarthost(peers.Listener):
    """A listening socket that only counts connections: nothing may reach it."""

    def __init__(self):
        self.connections = 0
        super().__init__("127.0.0.1", 0, backlog=5, threaded=False)

    def _session(self, c, ip):
        self.connections += 1
        c.close()


@pytest.fixture
def smarthost():
    s = Smarthost()
    yield s
    s.stop()


@pytest.fixture
def k(kurier_factory, smarthost):
    k = kurier_factory(extra="relay_host 127.0.0.1:%d;\naliases %s/aliases;\n"
                             "local_admin admin@example.test;\n"
                       % (smarthost.port, "%s"))
    # the aliases file beside the config (the daemon reads it before dropping root)
    with open(k.conf) as f:
        text = f.read().replace("aliases %s/aliases;", "aliases %s/aliases;" % k.dir)
    with open(k.conf, "w") as f:
        f.write(text)
    k.aliases = os.path.join(k.dir, "aliases")
    with open(k.aliases, "w") as f:
        f.write(ALIASES)
    k.add_domain("example.test")
    k.add_mailbox("admin@example.test")
    k.add_mailbox("ops@example.test")
    k.start()
    return k


def subjects(k, addr):
    out = []
    for p in k.maildir_new(addr):
        with open(p, "rb") as f:
            m = re.search(rb"^Subject: (.*)$", f.read(), re.M)
        out.append(m.group(1).decode() if m else "")
    return out


def test_sendmail_root_reaches_the_admin_mailbox(k, smarthost):
    r = run(k, SENDMAIL, "root", input=b"Subject: cron output\n\nhello root\n")
    assert r.returncode == 0, r
    k.wait_mail("admin@example.test")
    k.wait_mail("ops@example.test")  # root: admin, ops (a local name again)
    # postmaster, MAILER-DAEMON and abuse through their aliases (abuse lists itself:
    # that is local_admin); www-data has none and goes to local_admin; "-oem" as cron
    # passes it is accepted
    for name in ("postmaster", "MAILER-DAEMON", "abuse", "www-data"):
        r = run(k, SENDMAIL, "-oem", name, input=("Subject: to %s\n\nx\n" % name).encode())
        assert r.returncode == 0, r
    k.wait_mail("admin@example.test", count=5)
    assert sorted(subjects(k, "admin@example.test")) == sorted(
        ["cron output", "to postmaster", "to MAILER-DAEMON", "to abuse", "to www-data"])
    k.wait_mail("ops@example.test", count=4)  # not www-data: local_admin is admin only
    k.wait_queue_empty()
    assert smarthost.connections == 0
    assert "/smtp[" not in k.log(), k.log()[-3000:]


def test_bounce_to_a_local_sender_is_delivered_locally(k, smarthost):
    # root (sendmail's default sender as root: root@hostname) writes to a mailbox
    # that does not exist: the bounce goes to root, i.e. the admin
    r = run(k, SENDMAIL, "nobody@example.test", input=b"Subject: lost\n\nx\n")
    assert r.returncode == 0, r
    files = k.wait_mail("admin@example.test")
    with open(files[0], "rb") as f:
        body = f.read()
    assert b"nobody@example.test" in body and b"Subject: lost" in body, body[:2000]
    assert re.search(rb"^Return-Path: <>", body, re.M), body[:500]
    k.wait_queue_empty()
    assert smarthost.connections == 0


def test_newaliases_checks_and_reloads(k):
    r = run(k, NEWALIASES)
    assert r.returncode == 0, r
    assert b"5 aliases" in r.stdout, r.stdout
    # a new alias takes effect after newaliases: www-data to ops
    with open(k.aliases, "a") as f:
        f.write("www-data: ops\n")
    r = run(k, NEWALIASES)
    assert r.returncode == 0 and b"6 aliases" in r.stdout, r
    k.wait_log("reloaded configuration")
    run(k, SENDMAIL, "www-data", input=b"Subject: after newaliases\n\nx\n")
    k.wait_mail("ops@example.test", count=1)
    assert subjects(k, "ops@example.test") == ["after newaliases"]
    assert k.maildir_new("admin@example.test") == []
    # a bad file: every error with file and line, exit 1, the daemon keeps the old one
    with open(k.aliases, "a") as f:
        f.write("broken admin@example.test\n"
                "mailman: \"|/usr/lib/mailman/mail/mailman post\"\n"
                "  \n"
                "dup: root\n"
                "dup: ops\n"
                "empty:\n")
    reloads = k.log().count("reloaded configuration")
    r = run(k, NEWALIASES)
    err = r.stderr.decode()
    assert r.returncode == 1, r
    assert "%s:9:1: expected \"name: address, ...\", got \"broken admin@example.test\"" % (
        k.aliases) in err, err
    assert "%s:10:1: alias \"mailman\": delivery to a command" % k.aliases in err, err
    assert "%s:13:1: alias \"dup\" again (first on line 12)" % k.aliases in err, err
    assert "%s:14:1: alias \"empty\": empty target" % k.aliases in err, err
    assert k.log().count("reloaded configuration") == reloads
    # "sendmail -bi" is newaliases too
    r = run(k, SENDMAIL, "-bi")
    assert r.returncode == 1 and b"delivery to a command" in r.stderr, r
    # a SIGHUP with the bad file is refused and names it; the old aliases stay
    k.proc.send_signal(1)
    k.wait_log("reload refused, keeping the running configuration: %s:9:1:" % k.aliases)
    run(k, SENDMAIL, "www-data", input=b"Subject: still\n\nx\n")
    k.wait_mail("ops@example.test", count=2)


def test_newaliases_without_an_aliases_file(kurier_factory, smarthost):
    """Without "aliases" in kurier.conf newaliases says what to set."""
    k = kurier_factory(extra="relay_host 127.0.0.1:%d;\n" % smarthost.port)
    k.add_domain("example.test")
    k.start()
    r = run(k, NEWALIASES)
    assert r.returncode == 1 and b"no aliases file is configured" in r.stderr, r
