#!/usr/bin/python3
"""AUTH brute-force limits (issue 9 item 8): failures block the client address and the
(address, account) pair, never the account alone, so nobody can lock a user out from
elsewhere; `kurier auth blocks [--clear ADDRESS|ACCOUNT]` lists and lifts blocks over
the control socket. Clients bind 127.0.0.x source addresses on loopback."""

import base64
import smtplib
import subprocess

import pytest

from conftest import KURIER, for_user


def b64(s):
    return base64.b64encode(s.encode()).decode()


def auth(k, user, password, source):
    """One AUTH PLAIN from source address; returns (code, text)."""
    with smtplib.SMTP("127.0.0.1", k.port, source_address=(source, 0), timeout=30) as s:
        s.ehlo("client.example")
        code, text = s.docmd("AUTH", "PLAIN " + b64("\0%s\0%s" % (user, password)))
        return code, text.decode(errors="replace")


@pytest.fixture
def k(kurier_factory):
    k = kurier_factory(listen_extra="    auth on;\n    auth_plaintext on;\n",
                       extra="auth {\n    max_failures 3;\n    max_failures_address 6;\n"
                             "    delay_max 0s;\n    block_time 1h;\n}\n")
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.add_mailbox("other@example.test", "other")
    k.start()
    return k


def test_failures_from_one_address_do_not_lock_the_account_out(k):
    codes = [auth(k, "demo@example.test", "wrong%d" % i, "127.0.0.2")[0] for i in range(4)]
    assert codes == [535, 535, 535, 454], codes
    # the owner, from elsewhere, still gets in
    code, text = auth(k, "demo@example.test", "demo", "127.0.0.3")
    assert code == 235, text
    # the guessing address is blocked for that account, even with the right password
    code, text = auth(k, "demo@example.test", "demo", "127.0.0.2")
    assert code == 454 and "4.7.0" in text, text
    # blocks are listed ...
    out = k.cli("auth", "blocks").stdout.decode()
    rows = [l.split() for l in out.splitlines()[1:]]
    assert len(rows) == 1 and rows[0][:3] == ["127.0.0.2", "demo@example.test", "3"], out
    # ... and lifted by address: the next try works
    r = k.cli("auth", "blocks", "--clear", "127.0.0.2")
    assert "cleared 1 block" in r.stdout.decode(), r.stdout
    code, text = auth(k, "demo@example.test", "demo", "127.0.0.2")
    assert code == 235, text
    assert k.cli("auth", "blocks").stdout.decode().strip() == "No AUTH blocks"
    assert "auth blocks cleared for 127.0.0.2 by admin: 1" in k.log()


def test_an_address_guessing_many_accounts_is_blocked_whole(k):
    for i in range(6):
        code, text = auth(k, "guess%d@example.test" % i, "x", "127.0.0.4")
        assert code == 535, (i, text)
    code, text = auth(k, "other@example.test", "other", "127.0.0.4")
    assert code == 454 and "4.7.0" in text, text
    code, text = auth(k, "other@example.test", "other", "127.0.0.5")
    assert code == 235, text
    out = k.cli("auth", "blocks").stdout.decode()
    assert "127.0.0.4" in out and "(every account)" in out, out


def test_clear_by_account(k):
    for src in ("127.0.0.6", "127.0.0.7"):
        for i in range(3):
            auth(k, "other@example.test", "bad", src)
        assert auth(k, "other@example.test", "other", src)[0] == 454
    # attacker-chosen bytes come back escaped
    for i in range(3):
        auth(k, "evil\tname\x1b[31m@example.test", "bad", "127.0.0.8")
    out = k.cli("auth", "blocks").stdout.decode()
    assert out.count("other@example.test") == 2, out
    assert "\x1b" not in out and "evil\\x09name\\x1b[31m@example.test" in out, out
    r = k.cli("auth", "blocks", "--clear", "OTHER@example.test")
    assert "cleared 2 blocks" in r.stdout.decode(), r.stdout
    assert auth(k, "other@example.test", "other", "127.0.0.6")[0] == 235
    assert auth(k, "other@example.test", "other", "127.0.0.7")[0] == 235


def test_auth_blocks_is_for_root_and_the_kurier_user(k):
    for args in (["auth", "blocks"], ["auth", "blocks", "--clear", "127.0.0.2"]):
        r = subprocess.run(["runuser", "-u", "nobody", "--", for_user(KURIER), "-c", k.conf] + args,
                           capture_output=True, timeout=30)
        err = r.stderr.decode()
        assert r.returncode == 1 and "permission denied" in err, (args, err)
        assert "not running" not in err, err


def test_auth_blocks_without_daemon(kurier_factory):
    k = kurier_factory()
    r = k.cli("auth", "blocks", check=False)
    assert r.returncode == 1 and b"kurierd is not running" in r.stderr, r.stderr
    r = k.cli("auth", "blocks", "--clear", check=False)
    assert r.returncode == 2 and b"usage" in r.stderr
