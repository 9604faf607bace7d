#!/usr/bin/python3
"""Containment of compromised sending accounts (issue 13, docs/abuse.md): per-account
limits (451 at the soft limit, a lock at the hard one), signals with their evidence,
the lock (535 at AUTH, queued mail held, a notice to the postmaster), the CLI
(account status/unlock, queue list --account). A real kurierd, smtplib on its
submission port; the remote next hop is a port where nothing listens until the test
starts Postfix's smtp-sink, so the accounts' mail stays queued."""

import json
import os
import re
import smtplib
import socket
import time

import pytest

from conftest import SAFETY, free_port
from peers import smtp_sink

ABUSE = """abuse {
    soft_messages_per_hour 5;
    hard_messages_per_hour 8;
    baseline_min 3;
    auth_failures 3;
    networks 3;
    spamtraps trap@remote.test;
    spamtraps traps.test;
    mail_to postmaster@example.test;
}
auth {
    max_failures 20;
    delay_max 1s;
}
"""


@pytest.fixture
def ab(kurier_factory):
    """kurierd with a plaintext-AUTH submission listener, the abuse block above, and
    relay_host on a free port (nothing listens there yet)."""
    sink_port = free_port()
    k = kurier_factory(extra="relay_host 127.0.0.1:%d;\n%s" % (sink_port, ABUSE))
    k.sink_port = sink_port
    k.sub_port = free_port()
    with open(k.conf, "a") as f:
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    auth_plaintext on;\n}\n"
                % k.sub_port)
    k.add_domain("example.test")
    for user in ("burst", "legit", "trapped", "guessed", "hangup", "roaming", "postmaster"):
        k.add_mailbox("%s@example.test" % user, user + "-pw")
    k.start()
    return k


def login(k, user):
    s = smtplib.SMTP("127.0.0.1", k.sub_port, timeout=SAFETY)
    try:
        s.ehlo("client.example.test")
        s.login(user, user.split("@")[0] + "-pw")
    except Exception:
        # hang up: a session left open makes the daemon's stop wait for it
        # (limits { shutdown_grace }, 30 s)
        s.close()
        raise
    return s


def send(s, user, rcpts, subject="hello"):
    msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (user, rcpts[0], subject))
    return s.sendmail(user, rcpts, msg.encode())


def status(k, user):
    r = k.cli("account", "status", user, "--json")
    accounts = json.loads(r.stdout)["accounts"]
    assert len(accounts) == 1, r.stdout
    return accounts[0]


def held_ids(k, user):
    out = k.cli("queue", "list", "--account", user).stdout.decode()
    return [line.split()[0] for line in out.splitlines() if line.rstrip().endswith("(held)")]


def wait_for(pred, what, k):
    deadline = time.time() + SAFETY
    while not pred():
        if time.time() > deadline:
            raise AssertionError("%s never happened; log:\n%s" % (what, k.log()[-3000:]))
        time.sleep(0.1)


def test_burst_soft_limit_then_lock_hold_and_release(ab):
    k = ab
    user = "burst@example.test"
    legit = "legit@example.test"
    # a legitimate account at its normal rate, before, during and after the burst
    with login(k, legit) as s:
        send(s, legit, ["friend@remote.test"])
    answers = []
    with login(k, user) as s:
        for i in range(9):
            try:
                send(s, user, ["victim%d@remote.test" % i], "spam %d" % i)
                answers.append(250)
            except smtplib.SMTPSenderRefused as e:
                answers.append(e.smtp_code)
                last = e.smtp_error.decode()
                if i == 5:
                    assert last == ("4.7.1 Sending rate limit reached for user "
                                    "burst@example.test, try again later"), last
                s.rset()
    # five accepted, then 451 (nothing lost: the client keeps its mail), and the
    # ninth attempt is past the hard limit: locked
    assert answers == [250] * 5 + [451] * 4, answers
    assert "locked for sending after suspected compromise" in last
    k.wait_log("account=burst@example.test decision=lock")
    k.wait_log("account=burst@example.test limit=messages_per_hour count=6 soft=5 "
               "decision=tempfail")
    # AUTH refused now; the legitimate account still logs in and sends
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        login(k, user)
    assert e.value.smtp_code == 535
    assert e.value.smtp_error.decode() == ("5.7.8 Account locked for sending after suspected "
                                           "compromise; contact your provider")
    with login(k, legit) as s:
        send(s, legit, ["friend2@remote.test"])
    # its five queued messages are held, nothing deleted
    wait_for(lambda: len(held_ids(k, user)) == 5, "five held messages", k)
    assert held_ids(k, legit) == []
    st = status(k, user)
    assert st["locked"] is True
    signals = [e["signal"] for e in st["evidence"]]
    assert "hard_limit" in signals and "volume_above_baseline" in signals, st
    assert st["counters"]["messages_per_hour"]["count"] == 9
    text = k.cli("account", "status", user).stdout.decode()
    assert "locked: yes" in text and "messages_per_hour: 9 (soft 5, hard 8)" in text
    # the postmaster is told, with the evidence
    notice = open(k.wait_mail("postmaster@example.test")[0], "rb").read().decode()
    assert "Subject: Account burst@example.test locked for sending" in notice
    assert "hard_limit" in notice and "messages_per_hour=9 hard=8" in notice
    # a locked account still receives mail on the MX port
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        s.sendmail("someone@remote.test", [user], b"Subject: for you\r\n\r\nhi\r\n")
    k.wait_mail(user)
    # the lock survives a restart (the directory has it)
    k.stop()
    k.start()
    with pytest.raises(smtplib.SMTPAuthenticationError):
        login(k, user)
    # unlock --release: the held mail goes out, AUTH works again
    dump = os.path.join(k.dir, "sink")  # smtp-sink writes as user postfix
    with smtp_sink(dump, "127.0.0.1", k.sink_port):
        r = k.cli("account", "unlock", user, "--release")
        assert "unlocked" in r.stdout.decode()
        k.wait_log("account=burst@example.test decision=released messages=5")
        k.cli("queue", "flush")
        wait_for(lambda: len(os.listdir(dump)) >= 7, "delivery to the sink", k)
        k.wait_queue_empty()
    with login(k, user) as s:
        send(s, user, ["again@remote.test"])
    assert status(k, user)["locked"] is False
    # the legitimate account was never touched
    assert status(k, legit)["evidence"] == []
    assert "account=legit@example.test" not in k.log()


def test_spamtrap_locks_at_once(ab):
    k = ab
    user = "trapped@example.test"
    with login(k, user) as s:
        # accepted like any message (the spammer learns nothing), then held
        assert send(s, user, ["someone@remote.test", "x@traps.test"]) == {}
    k.wait_log("account=trapped@example.test signal=spamtrap score=100")
    k.wait_log("account=trapped@example.test decision=lock")
    wait_for(lambda: len(held_ids(k, user)) == 1, "the trap message held", k)
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        login(k, user)
    assert e.value.smtp_code == 535
    st = status(k, user)
    assert st["locked"] and st["evidence"][0]["signal"] == "spamtrap"
    assert "x@traps.test" in st["evidence"][0]["evidence"]
    # an address trap works the same, for another account
    with login(k, "legit@example.test") as s:
        send(s, "legit@example.test", ["trap@remote.test"])
    k.wait_log("account=legit@example.test decision=lock")
    # unlock --delete: the held mail goes away
    k.cli("account", "unlock", user, "--delete")
    k.wait_log("account=trapped@example.test decision=deleted messages=1")
    wait_for(lambda: held_ids(k, user) == [], "the held message deleted", k)
    with login(k, user):
        pass
    # unlocking an account that is not locked is an error
    r = k.cli("account", "unlock", user, check=False)
    assert r.returncode != 0 and "not locked" in r.stderr.decode()


def test_login_after_many_failures_is_a_signal(ab):
    k = ab
    user = "guessed@example.test"
    for _ in range(3):
        s = smtplib.SMTP("127.0.0.1", k.sub_port, timeout=SAFETY)
        s.ehlo("x")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(user, "wrong")
        s.close()
    with login(k, user) as s:
        send(s, user, ["a@remote.test"])
    k.wait_log("account=guessed@example.test signal=auth_after_failures score=30")
    st = status(k, user)
    assert not st["locked"] and st["score"] == 30
    # smtplib tries PLAIN, then LOGIN: two failures a try
    m = re.search(r"after (\d+) failures", st["evidence"][0]["evidence"])
    assert m and int(m.group(1)) >= 3, st


def test_logins_from_many_networks_are_a_signal(ab):
    """Logins from three /24s within the window (the whole of 127.0.0.0/8 is
    loopback: each client binds another source network)."""
    k = ab
    user = "roaming@example.test"
    for net in (1, 2, 3):
        s = smtplib.SMTP("127.0.0.1", k.sub_port, timeout=SAFETY,
                         source_address=("127.0.%d.9" % net, 0))
        s.login(user, "roaming-pw")
        s.quit()
    k.wait_log("account=roaming@example.test signal=many_networks score=30")
    st = status(k, user)
    assert not st["locked"]
    assert "logins from 3 networks" in st["evidence"][0]["evidence"], st


def test_hangup_while_the_limit_answer_waits(ab):
    """The 451 of a limit comes from the loop like a verdict: a client that hangs up
    with its MAIL pending must not leave the answer to a freed session."""
    k = ab
    user = "hangup@example.test"
    with login(k, user) as s:
        for i in range(5):
            send(s, user, ["h%d@remote.test" % i])
    for n in (6, 7):  # over the soft limit, under the hard one
        s = socket.create_connection(("127.0.0.1", k.sub_port), timeout=SAFETY)
        s.sendall(b"EHLO x\r\nAUTH PLAIN AGhhbmd1cEBleGFtcGxlLnRlc3QAaGFuZ3VwLXB3\r\n")
        data = b""
        while b"\r\n235 " not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        s.sendall(b"MAIL FROM:<hangup@example.test>\r\n")
        s.close()  # before the 451 comes
        k.wait_log("account=hangup@example.test limit=messages_per_hour count=%d" % n)
    with login(k, "legit@example.test") as s:  # the daemon lives on
        send(s, "legit@example.test", ["z@remote.test"])
    assert k.proc.poll() is None


def test_limits_file_and_refused_recipients(kurier_factory):
    """Per-account and per-domain limits from limits_file; refused recipients count
    against the account; a bad spamtrap entry is a config error."""
    k = kurier_factory(extra="relay_host 127.0.0.1:%d;\n" % free_port())
    lim = os.path.join(k.dir, "abuse-limits")
    with open(lim, "w") as f:
        f.write("# name limit soft hard\n"
                "@example.test        messages_per_hour          2 50\n"
                "big@example.test     messages_per_hour          4 50\n"
                "failing@example.test failed_recipients_per_hour 2 50\n")
    k.sub_port = free_port()
    with open(k.conf, "a") as f:
        f.write("abuse {\n    limits_file %s;\n}\n" % lim)
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    auth_plaintext on;\n}\n"
                % k.sub_port)
    k.add_domain("example.test")
    for user in ("big", "small", "failing"):
        k.add_mailbox("%s@example.test" % user, user + "-pw")
    k.start()

    def burst(user, n):
        codes = []
        with login(k, user) as s:
            for i in range(n):
                try:
                    send(s, user, ["r%d@remote.test" % i])
                    codes.append(250)
                except smtplib.SMTPSenderRefused as e:
                    codes.append(e.smtp_code)
                    s.rset()
        return codes

    assert burst("big@example.test", 5) == [250] * 4 + [451]  # its own line
    assert burst("small@example.test", 3) == [250] * 2 + [451]  # its domain's
    assert status(k, "big@example.test")["counters"]["messages_per_hour"]["soft"] == 4
    with login(k, "failing@example.test") as s:
        s.mail("failing@example.test")
        assert s.rcpt("nobody1@example.test")[0] == 550
        assert s.rcpt("nobody2@example.test")[0] == 550
        code, text = s.rcpt("friend@remote.test")  # two refused: no more this hour
        assert code == 451 and b"Sending rate limit reached" in text, text
    k.wait_log("account=failing@example.test limit=failed_recipients_per_hour count=2 soft=2 "
               "decision=tempfail")
    # a spamtrap that is neither an address nor a domain
    bad = os.path.join(k.dir, "bad.conf")
    with open(bad, "w") as f:
        f.write("abuse {\n    spamtraps <trap@example.org>;\n}\n")
    r = k.cli("config", "check", bad, check=False)
    assert r.returncode != 0
    assert b"an address like trap@example.org or a domain" in r.stderr + r.stdout
