#!/usr/bin/python3
"""Forwarding that survives SPF (docs/forwarding.md): a sender domain with a strict
SPF record (-all, only its own address 127.0.0.5) on the test DNS (spfdns.py); its
mail to a forwarding alias or mailbox of ours goes out to a receiver on 127.0.0.71
that checks SPF with an independent implementation (Debian's python3-spf) and takes
the mail only because the envelope sender was rewritten with SRS into our domain;
the receiver's bounce to that SRS address comes back and reaches the original
sender's server (127.0.0.72); forged and expired SRS addresses are refused at RCPT;
rotating the secret keeps old addresses valid; mail that failed SPF is not
forwarded. srsref.py is the reference algorithm of libsrs2/postsrsd, and Debian's
postsrsd itself makes and reverses the same addresses."""

import os
import smtplib
import time

import pytest

import peers
import srsref
from conftest import SAFETY, free_port
from spfdns import SpfDNS
from test_outbound import wait_for

spf = pytest.importorskip("spf")  # Debian's python3-spf (scripts/install-deps)
import dns.resolver  # noqa: E402  (python3-dnspython, which python3-spf uses)

RECEIVER = "127.0.0.71"  # the forward target's provider (gmail.test): checks SPF
ORIGIN = "127.0.0.72"  # strict.test's own server: where bounces end up
SENDER_IP = "127.0.0.5"  # the only address strict.test's SPF allows
SECRET_A = "first-srs-secret-0123456789"
SECRET_B = "second-srs-secret-9876543210"

ZONE = {
    "strict.test": [{"TXT": "v=spf1 ip4:%s -all" % SENDER_IP}],
    # SENDER_IP is not soft.test's: SPF softfail, a score but no fail
    "soft.test": [{"TXT": "v=spf1 ip4:127.0.0.9 ~all"}],
    # our domain: kurier sends from some 127/8 address
    "example.test": [{"TXT": "v=spf1 ip4:127.0.0.0/8 -all"}],
}


class SpfReceiver(peers.Listener):
    """gmail.test's MX: MAIL FROM is checked with python3-spf (check_host of the
    client address and the envelope sender, on the test DNS); anything but pass is
    550 5.7.23. Only users exist (else 550 5.1.1). Messages land in .messages as
    (sender, rcpts, spf result)."""

    def __init__(self, host, port, users, dns_port):
        self.host, self.port, self.users = host, port, set(users)
        self.messages, self.refused = [], []
        self.sources = []  # (client address, EHLO name) of each message taken
        self.res = dns.resolver.Resolver(configure=False)
        self.res.nameservers = ["127.0.0.1"]
        self.res.port = dns_port
        super().__init__(host, port)

    def check_spf(self, ip, sender, helo):
        old = dns.resolver.default_resolver
        dns.resolver.default_resolver = self.res
        try:
            return spf.check2(i=ip, s=sender, h=helo)[0]
        finally:
            dns.resolver.default_resolver = old

    def _session(self, c, ip):
        c.settimeout(SAFETY)
        f = c.makefile("rb")

        def send(line):
            c.sendall((line + "\r\n").encode())

        helo, mail, rcpts, result = "", None, [], None
        try:
            send("220 %s ESMTP" % self.host)
            while True:
                line = f.readline().decode(errors="replace").rstrip("\r\n")
                if not line:
                    return
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    helo = line[5:].strip()
                    send("250 %s" % self.host)
                elif verb == "MAIL":
                    mail, rcpts = line[10:].split()[0].strip("<>"), []
                    result = self.check_spf(ip, mail, helo) if mail else "none"
                    if mail and result != "pass":
                        self.refused.append((mail, result))
                        send("550 5.7.23 SPF %s for %s from %s" % (result, mail, ip))
                        mail = None
                    else:
                        send("250 2.1.0 Ok")
                elif verb == "RCPT":
                    addr = line[8:].split()[0].strip("<>").lower()
                    if mail is None:
                        send("503 5.5.1 MAIL first")
                    elif addr in self.users:
                        rcpts.append(addr)
                        send("250 2.1.5 Ok")
                    else:
                        send("550 5.1.1 <%s>: no such user" % addr)
                elif verb == "DATA":
                    send("354 go ahead")
                    while f.readline() not in (b".\r\n", b".\n", b""):
                        pass
                    self.sources.append((ip, helo))
                    self.messages.append((mail, rcpts, result))
                    send("250 2.0.0 Ok: queued")
                elif verb == "RSET":
                    mail, rcpts = None, []
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("250 2.0.0 Ok")
        except OSError:
            pass
        finally:
            c.close()


@pytest.fixture
def world(kurier_factory):
    """make(secrets) -> (kurier, receiver, origin): kurierd (checks spf) hosting
    example.test with SRS into example.test; gmail.test's mail goes to the SPF
    receiver, strict.test's to the original sender's server."""
    srv = SpfDNS(free_port())
    srv.load(ZONE)
    srv.start()
    rport, oport = free_port(RECEIVER), free_port(ORIGIN)
    recv = SpfReceiver(RECEIVER, rport, ["friend@gmail.test"], srv.port)
    origin = peers.Downstream(ORIGIN, oport, ["alice@strict.test",
                                                  "srs0=abcd=xy=orig.test=joe@strict.test"])
    def make(secrets=(SECRET_A,), srs_extra="", top="", listen_extra=""):
        k = kurier_factory(
            listen_extra="    checks spf;\n" + listen_extra,
            extra=top + "resolver 127.0.0.1@%d;\n"
            "transport gmail.test {\n    relay %s:%d;\n    tls none;\n}\n"
            "transport strict.test {\n    relay %s:%d;\n    tls none;\n}\n"
            "srs {\n    domain example.test;\n    secret_file %s/srs.secrets;\n%s}\n"
            % (srv.port, RECEIVER, rport, ORIGIN, oport, "%(dir)s", srs_extra))
        with open(k.conf) as f:
            text = f.read().replace("%(dir)s", k.dir)
        with open(k.conf, "w") as f:
            f.write(text)
        write_secrets(k, secrets)
        k.add_domain("example.test")
        k.add_mailbox("demo@example.test", "demo")
        k.cli("alias", "add", "fwd@example.test", "friend@gmail.test")
        k.recv, k.origin = recv, origin
        return k

    yield make
    recv.stop()
    origin.stop()
    srv.stop()


def write_secrets(k, secrets):
    path = os.path.join(k.dir, "srs.secrets")
    with open(path, "w") as f:
        f.write("# newest first\n" + "".join(s + "\n" for s in secrets))
    os.chmod(path, 0o600)


def send(k, sender, rcpt, source=SENDER_IP, msg=b"Subject: t\r\n\r\nhello\r\n"):
    with smtplib.SMTP("127.0.0.1", k.port, source_address=(source, 0), timeout=SAFETY) as s:
        s.ehlo("client.strict.test")
        s.sendmail(sender, [rcpt], msg)


def rcpt(k, addr, sender="", source=RECEIVER):
    """(code, text) of RCPT TO:<addr> from source."""
    with smtplib.SMTP("127.0.0.1", k.port, source_address=(source, 0), timeout=SAFETY) as s:
        s.ehlo("mx.gmail.test")
        assert s.mail(sender)[0] == 250
        code, text = s.rcpt(addr)
        return code, "%d %s" % (code, text.decode(errors="replace"))


def bounce(k, addr, source=RECEIVER):
    """The receiver's bounce (null sender) to addr, as a real MTA sends it."""
    with smtplib.SMTP("127.0.0.1", k.port, source_address=(source, 0), timeout=SAFETY) as s:
        s.ehlo("mx.gmail.test")
        s.sendmail("", [addr], b"Subject: Undelivered Mail Returned to Sender\r\n\r\nsorry\r\n")


def test_without_srs_the_receiver_refuses(world):
    """The premise: forwarded with the original sender, the strict record fails."""
    r = world()
    with open(r.conf) as f:
        text = f.read()
    with open(r.conf, "w") as f:
        f.write(text[:text.index("srs {")])
    r.start()
    send(r, "alice@strict.test", "fwd@example.test")
    r.wait_log("status=bounced")
    assert "SPF fail" in r.log(), r.log()[-2000:]


def test_forward_is_rewritten_and_bounce_goes_back(world):
    k = world()
    k.start()
    recv_msgs = lambda: list(k.recv.messages)  # noqa: E731
    send(k, "alice@strict.test", "fwd@example.test")
    wait_for(lambda: recv_msgs(), what="forwarded message", k=k)
    mail, rcpts, result = recv_msgs()[0]
    assert rcpts == ["friend@gmail.test"]
    assert result == "pass"  # python3-spf: our domain may send from here
    today = int(time.time() // 86400)
    assert mail in (srsref.forward(SECRET_A, "alice@strict.test", "example.test", today),
                    srsref.forward(SECRET_A, "alice@strict.test", "example.test", today + 1)), mail
    assert mail.startswith("SRS0=") and mail.endswith("=strict.test=alice@example.test")
    # the receiver's bounce to the SRS address reaches alice's own server
    bounce(k, mail)
    origin = k.origin
    wait_for(lambda: origin.messages, what="bounce at the origin", k=k)
    sender, to, _ = origin.messages[0]
    assert (sender, to) == ("", ["alice@strict.test"]), origin.messages
    # a local sender is not rewritten
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:  # 127.0.0.1: SPF pass
        s.sendmail("demo@example.test", ["fwd@example.test"], b"Subject: x\r\n\r\nx\r\n")
    wait_for(lambda: len(recv_msgs()) == 2, what="second forward", k=k)
    assert recv_msgs()[1][0] == "demo@example.test"


def test_forward_leaves_through_the_egress_pool(world):
    """A forward is outbound mail like any other: it leaves from the default egress
    pool's address, with that address's EHLO name, and still passes SPF as ours."""
    src = "127.0.0.73"
    k = world(top="egress pool main {\n    source %s ehlo out1.example.test;\n"
              "    default on;\n}\n" % src)
    k.start()
    send(k, "alice@strict.test", "fwd@example.test")
    recv = k.recv
    wait_for(lambda: recv.messages, what="forwarded message", k=k)
    mail, rcpts, result = recv.messages[0]
    assert mail.startswith("SRS0=") and result == "pass", recv.messages
    assert recv.sources[0] == (src, "out1.example.test"), recv.sources


def test_srs1_for_an_address_rewritten_elsewhere(world):
    k = world()
    k.start()
    other = "SRS0=AbCd=XY=orig.test=joe@strict.test"  # strict.test forwarded it to us
    send(k, other, "fwd@example.test")
    recv = k.recv
    wait_for(lambda: recv.messages, what="forwarded message", k=k)
    mail = recv.messages[0][0]
    assert mail == srsref.forward(SECRET_A, other, "example.test", 0), mail
    assert mail.startswith("SRS1=") and "=strict.test==AbCd=XY=orig.test=joe@" in mail
    # back to the first forwarder, in its own SRS0 form
    bounce(k, mail)
    origin = k.origin
    wait_for(lambda: origin.messages, what="bounce at the first forwarder", k=k)
    assert origin.messages[0][1] == [other.lower()], origin.messages


def test_forged_and_expired_are_refused_at_rcpt(world):
    k = world()
    k.start()
    today = int(time.time() // 86400)
    good = srsref.forward(SECRET_A, "alice@strict.test", "example.test", today)
    forged = good[:5] + ("AAAA" if good[5:9] != "AAAA" else "BBBB") + good[9:]
    other_user = good.replace("=alice@", "=mallory@")
    expired = srsref.forward(SECRET_A, "alice@strict.test", "example.test", today - 22)
    not_ours = srsref.forward("some-other-secret-000", "alice@strict.test", "example.test",
                              today)
    for addr in (forged, other_user, expired, not_ours, "SRS0=xx@example.test"):
        code, text = rcpt(k, addr)
        assert code == 550 and "5.1.1" in text, (addr, code, text)
    assert "SRS address refused: expired" in k.log()
    assert "SRS address refused: bad hash" in k.log()
    # the valid one, in lower case as some relays send it: accepted
    code, text = rcpt(k, good.lower())
    assert code == 250, text
    # and 21 days old is still valid (max_age 21d)
    code, text = rcpt(k, srsref.forward(SECRET_A, "alice@strict.test", "example.test",
                                        today - 20))
    assert code == 250, text


def test_rotation_keeps_old_addresses_valid(world):
    k = world()
    k.start()
    today = int(time.time() // 86400)
    old = srsref.forward(SECRET_A, "alice@strict.test", "example.test", today)
    k.stop()
    write_secrets(k, [SECRET_B, SECRET_A])
    k.start()
    code, text = rcpt(k, old)
    assert code == 250, text
    send(k, "alice@strict.test", "fwd@example.test")
    recv = k.recv
    wait_for(lambda: recv.messages, what="forwarded message", k=k)
    mail = recv.messages[0][0]
    assert mail in (srsref.forward(SECRET_B, "alice@strict.test", "example.test", today),
                    srsref.forward(SECRET_B, "alice@strict.test", "example.test", today + 1))
    # the old secret retired: its addresses are refused
    k.stop()
    write_secrets(k, [SECRET_B])
    k.start()
    code, text = rcpt(k, old)
    assert code == 550, text


def test_secret_file_must_be_private(world):
    k = world()
    os.chmod(os.path.join(k.dir, "srs.secrets"), 0o644)
    r = k.cli("config", "check", check=False)
    assert r.returncode != 0
    assert b"SRS secret file is readable or writable by others" in r.stderr + r.stdout


def test_mailbox_forward_cli(world):
    k = world()
    k.cli("mailbox", "forward", "demo@example.test", "friend@gmail.test", "--keep")
    out = k.cli("mailbox", "forward", "demo@example.test", "--show").stdout.decode().split()
    assert sorted(out) == ["demo@example.test", "friend@gmail.test"], out
    k.start()
    send(k, "alice@strict.test", "demo@example.test")
    recv = k.recv
    wait_for(lambda: recv.messages, what="forwarded copy", k=k)
    assert recv.messages[0][2] == "pass"
    k.wait_mail("demo@example.test")  # and the kept copy
    k.cli("mailbox", "forward", "demo@example.test", "--off")
    assert k.cli("mailbox", "forward", "demo@example.test", "--show").stdout == b""
    r = k.cli("mailbox", "forward", "nobody@example.test", "x@gmail.test", check=False)
    assert r.returncode == 1 and b"no such mailbox" in r.stderr




def test_mail_that_failed_spf_is_not_forwarded(world):
    k = world()
    k.cli("mailbox", "forward", "demo@example.test", "friend@gmail.test", "--keep")
    k.start()
    forger = "127.0.0.6"  # not strict.test's address: SPF fail (score 8, below 10)
    # forward only: refused at RCPT, the sender's server keeps the problem
    with smtplib.SMTP("127.0.0.1", k.port, source_address=(forger, 0), timeout=SAFETY) as s:
        s.ehlo("client.strict.test")
        assert s.mail("alice@strict.test")[0] == 250
        code, text = s.rcpt("fwd@example.test")
        assert code == 550 and b"5.7.1" in text and b"not forwarded" in text, text
    # with a kept copy: accepted, delivered locally, not forwarded
    send(k, "alice@strict.test", "demo@example.test", source=forger)
    k.wait_mail("demo@example.test")
    k.wait_queue_empty()
    assert k.recv.messages == [] and k.recv.refused == [], (k.recv.messages, k.recv.refused)
    assert "not forwarded: the message failed SPF" in k.log()
    # the same from strict.test's own address is forwarded
    send(k, "alice@strict.test", "demo@example.test")
    wait_for(lambda: k.recv.messages, what="forwarded copy", k=k)


def test_mail_that_scored_high_is_not_forwarded(world):
    """Not SPF fail, but a score up to the listener's greylist_score (softfail, 2):
    greylisted, then accepted on retry, and still not passed on to another provider."""
    k = world(top="greylist {\n    delay 1s;\n}\n", listen_extra="    greylist_score 2;\n")
    k.cli("mailbox", "forward", "demo@example.test", "friend@gmail.test", "--keep")
    k.start()
    # forward only: refused at RCPT (the score carried from MAIL decides)
    with smtplib.SMTP("127.0.0.1", k.port, source_address=(SENDER_IP, 0), timeout=SAFETY) as s:
        s.ehlo("client.soft.test")
        assert s.mail("bob@soft.test")[0] == 250
        code, text = s.rcpt("fwd@example.test")
        assert code == 550 and b"5.7.1" in text and b"not forwarded" in text, text
    # with a kept copy: greylisted first (nothing lost), then accepted and kept only
    codes = []

    def retried():
        with smtplib.SMTP("127.0.0.1", k.port, source_address=(SENDER_IP, 0),
                          timeout=SAFETY) as s:
            s.ehlo("client.soft.test")
            assert s.mail("bob@soft.test")[0] == 250
            code, text = s.rcpt("demo@example.test")
            codes.append(code)
            if code != 250:
                assert code == 451, text
                time.sleep(0.2)  # the greylist delay is 1 s: not every 50 ms
                return False
            code, text = s.data(b"Subject: scored\r\n\r\nhello\r\n")
            assert code == 250, text
            return True
    wait_for(retried, what="accepted after greylisting", k=k)
    assert codes[0] == 451, codes
    k.wait_mail("demo@example.test")
    k.wait_queue_empty()
    assert k.recv.messages == [] and k.recv.refused == [], (k.recv.messages, k.recv.refused)
    assert "not forwarded: the message failed SPF or scored as spam" in k.log()


def test_forward_target_verified_at_rcpt(world):
    k = world()
    k.cli("alias", "add", "gone@example.test", "nobody@gmail.test")
    k.start()
    code, text = rcpt(k, "gone@example.test", sender="alice@strict.test", source=SENDER_IP)
    assert code == 550 and "5.1.1" in text and "nobody@gmail.test" in text, text
    assert "no such user" in text  # the target's own words
    code, text = rcpt(k, "fwd@example.test", sender="alice@strict.test", source=SENDER_IP)
    assert code == 250, text
    assert "forward_of=<fwd@example.test>" in k.log()


def test_hangup_during_the_forward_probe_cancels_it(world):
    """The new await point at RCPT: the client leaves while the forward target's
    server holds the probe; the probe's connection is closed, nothing else runs
    (ASan build), and the daemon goes on."""
    import socket
    port = free_port(ORIGIN)
    ds = peers.Downstream(ORIGIN, port, ["slow@held.test"])
    try:
        k = world(top="transport held.test {\n    relay %s:%d;\n    tls none;\n}\n"
                  % (ORIGIN, port))
        k.cli("alias", "add", "held@example.test", "slow@held.test")
        k.start()
        ds.hold.set()
        c = socket.create_connection(("127.0.0.1", k.port), timeout=SAFETY)
        c.sendall(b"EHLO x.test\r\nMAIL FROM:<>\r\nRCPT TO:<held@example.test>\r\n")
        wait_for(lambda: ds.held == 1, what="the probe waits", k=k)
        c.close()
        wait_for(lambda: ds.hangups == 1, what="the probe's connection closed", k=k)
        ds.hold.clear()
        code, text = rcpt(k, "held@example.test")
        assert code == 250, text
        assert k.stop() == 0
        assert "ERROR: AddressSanitizer" not in k.log() and "runtime error" not in k.log()
    finally:
        ds.stop()


def test_bounce_to_srs_address_passes_batv(world):
    """With BATV on for our domains, bounces must carry a prvs= tag, except to an
    SRS address: its own signature is checked (and a forged one still refused)."""
    k = world(top="batv {\n    domains all;\n    key_file %(dir)s/batv.keys;\n}\n")
    path = os.path.join(k.dir, "batv.keys")
    with open(path, "w") as f:
        f.write("0 batv-secret-0123456789\n")
    os.chmod(path, 0o600)
    k.start()
    today = int(time.time() // 86400)
    good = srsref.forward(SECRET_A, "alice@strict.test", "example.test", today)
    code, text = rcpt(k, "demo@example.test")
    assert code == 550 and "5.7.1" in text, text  # BATV is on: untagged bounce refused
    bounce(k, good)
    wait_for(lambda: k.origin.messages, what="bounce at the origin", k=k)
    assert k.origin.messages[0][1] == ["alice@strict.test"]
    code, text = rcpt(k, good.replace("=alice@", "=mallory@"))
    assert code == 550 and "5.1.1" in text, text


POSTSRSD = "/usr/sbin/postsrsd"  # Debian's postsrsd (scripts/install-deps)


def tcp_table(port, key):
    """One Postfix tcp_table lookup ("get KEY" -> "200 VALUE"), as postsrsd serves."""
    import socket
    import urllib.parse
    with socket.create_connection(("127.0.0.1", port), timeout=SAFETY) as c:
        c.sendall(("get %s\n" % urllib.parse.quote(key, safe="@=+-.")).encode())
        line = c.makefile("rb").readline().decode().rstrip("\n")
    code, _, value = line.partition(" ")
    return code, urllib.parse.unquote(value)


@pytest.fixture
def postsrsd(tmp_path):
    import subprocess
    if not os.path.exists(POSTSRSD):
        pytest.skip("postsrsd is not installed")
    sf = tmp_path / "postsrsd.secret"
    sf.write_text(SECRET_A + "\n")
    os.chmod(sf, 0o600)
    fport, rport = free_port(), free_port()
    p = subprocess.Popen([POSTSRSD, "-s%s" % sf, "-dexample.test", "-l127.0.0.1", "-4",
                          "-f%d" % fport, "-r%d" % rport],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from conftest import wait_port
        wait_port("127.0.0.1", fport, proc=p)
        wait_port("127.0.0.1", rport, proc=p)
        yield fport, rport
    finally:
        p.terminate()
        p.wait(timeout=SAFETY)


def test_interoperates_with_postsrsd(world, postsrsd):
    """The same secret in postsrsd (libsrs2) and kurier: the same addresses both ways."""
    fport, rport = postsrsd
    k = world()
    k.start()
    send(k, "alice@strict.test", "fwd@example.test")
    other = "SRS0=AbCd=XY=orig.test=joe@strict.test"
    send(k, other, "fwd@example.test")
    wait_for(lambda: len(k.recv.messages) == 2, what="two forwards", k=k)
    ours = [m[0] for m in k.recv.messages]
    assert tcp_table(fport, "alice@strict.test") == ("200", ours[0]), ours
    assert tcp_table(fport, other) == ("200", ours[1]), ours
    # postsrsd reverses ours, kurier takes postsrsd's
    assert tcp_table(rport, ours[0]) == ("200", "alice@strict.test")
    code, made = tcp_table(fport, "carol@strict.test")
    assert code == "200" and made.startswith("SRS0="), made
    k.origin.users.add("carol@strict.test")
    bounce(k, made)
    wait_for(lambda: k.origin.messages, what="bounce at the origin", k=k)
    assert k.origin.messages[-1][1] == ["carol@strict.test"]
