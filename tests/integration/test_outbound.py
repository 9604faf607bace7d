#!/usr/bin/python3
"""Remote delivery end to end: kurierd takes mail from a trusted client, looks the
recipient domains up in a real unbound serving test zones, and delivers to receivers
on other loopback addresses (127.0.0.x; `outbound { port P; }` points kurier at the
receivers' port): MX preference and fallback, equal preferences, implicit MX, null
MX, NXDOMAIN, an MX pointing back to us, mixed per-recipient replies with a retry,
lifetime expiry, smarthosts with fallback, a per-sender relay with AUTH over
STARTTLS (the password never in the log), a restart in the middle of a retry
schedule, and pflogsumm reading the result."""

import contextlib
import os
import re
import shutil
import smtplib
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

import peers
from conftest import SAFETY, free_port

PFLOGSUMM = shutil.which("pflogsumm") or "/usr/sbin/pflogsumm"

ZONES = r"""
    local-zone: "test." nodefault
    local-zone: "pref.test." static
    local-data: "pref.test. 60 IN MX 10 mx1.pref.test."
    local-data: "pref.test. 60 IN MX 20 mx2.pref.test."
    local-data: "mx1.pref.test. 60 IN A 127.0.0.21"
    local-data: "mx2.pref.test. 60 IN A 127.0.0.22"
    local-zone: "equal.test." static
    local-data: "equal.test. 60 IN MX 10 a.equal.test."
    local-data: "equal.test. 60 IN MX 10 b.equal.test."
    local-data: "a.equal.test. 60 IN A 127.0.0.23"
    local-data: "b.equal.test. 60 IN A 127.0.0.24"
    local-zone: "implicit.test." static
    local-data: "implicit.test. 60 IN A 127.0.0.25"
    local-zone: "nullmx.test." static
    local-data: "nullmx.test. 60 IN MX 0 ."
    local-zone: "self.test." static
    local-data: "self.test. 60 IN MX 10 mx.example.test."
    local-zone: "mixed.test." static
    local-data: "mixed.test. 60 IN MX 10 mx.mixed.test."
    local-data: "mx.mixed.test. 60 IN A 127.0.0.26"
    local-zone: "expire.test." static
    local-data: "expire.test. 60 IN MX 10 mx.expire.test."
    local-data: "mx.expire.test. 60 IN A 127.0.0.27"
    local-zone: "restart.test." static
    local-data: "restart.test. 60 IN MX 10 mx.restart.test."
    local-data: "mx.restart.test. 60 IN A 127.0.0.31"
    local-zone: "relayed.test." static
    local-data: "relayed.test. 60 IN MX 10 mx.relayed.test."
    local-data: "mx.relayed.test. 60 IN A 127.0.0.99"
    local-zone: "smarthost.test." static
    local-data: "smtp.smarthost.test. 60 IN A 127.0.0.29"
    local-zone: "xn--bcher-kva.test." static
    local-data: "xn--bcher-kva.test. 60 IN MX 10 mx.xn--bcher-kva.test."
    local-data: "mx.xn--bcher-kva.test. 60 IN A 127.0.0.34"
    local-zone: "." static
"""

@pytest.fixture(scope="module")
def unbound():
    """unbound on a free loopback port with the zones above: "127.0.0.1@PORT"."""
    with peers.unbound(ZONES, "pref.test") as addr:
        yield addr


# --- a scripted SMTP receiver ------------------------------------------------------


class Receiver(peers.Listener):
    """A small SMTP server on HOST:PORT in a thread. rcpt_reply maps a recipient
    address to the reply its RCPT gets ("250 ..." when absent); it may be changed
    while running. With tls (cert, key) it offers STARTTLS (implicit: TLS from the first
    byte instead, as on port 465); with auth (user, pass) it
    offers AUTH PLAIN/LOGIN and refuses MAIL before a login. Accepted messages are
    in .messages as dicts (mail, rcpts, data, tls, auth)."""

    def __init__(self, host, port, rcpt_reply=None, tls=None, auth=None, greeting=None,
                 implicit=False, smtputf8=False):
        self.host, self.port, self.implicit = host, port, implicit
        self.smtputf8 = smtputf8
        self.rcpt_reply = dict(rcpt_reply or {})
        self.tls, self.auth, self.greeting = tls, auth, greeting
        self.messages = []
        self.sessions = 0
        self.auth_seen = []  # credentials that reached us, and whether under TLS
        self.lock = threading.Lock()
        super().__init__(host, port, backlog=50, keep=True)

    def count(self, rcpt=None):
        with self.lock:
            if rcpt is None:
                return len(self.messages)
            return sum(1 for m in self.messages if rcpt in m["rcpts"])

    def _session(self, c, ip):
        with self.lock:
            self.sessions += 1
        c.settimeout(30)
        state = {"tls": False, "authed": False}
        if self.implicit:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*self.tls)
            try:
                c = ctx.wrap_socket(c, server_side=True)
            except (OSError, ssl.SSLError):
                c.close()
                return
            state["tls"] = True
        f = c.makefile("rb")

        def send(line):
            c.sendall((line + "\r\n").encode())

        def readline():
            line = f.readline()
            if not line:
                raise EOFError
            return line.decode(errors="replace").rstrip("\r\n")

        try:
            send(self.greeting or "220 %s ESMTP test receiver" % self.host)
            if self.greeting and not self.greeting.startswith("220"):
                readline()
                return
            mail, rcpts = None, []
            while True:
                line = readline()
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    ext = ["PIPELINING", "SIZE 10485760", "8BITMIME"]
                    if self.tls and not state["tls"]:
                        ext.append("STARTTLS")
                    if self.auth:
                        ext.append("AUTH PLAIN LOGIN")
                    if self.smtputf8:
                        ext.append("SMTPUTF8")
                    lines = ["%s" % self.host] + ext
                    for i, l in enumerate(lines):
                        send("250%s%s" % (" " if i == len(lines) - 1 else "-", l))
                elif line.upper() == "STARTTLS" and self.tls:
                    send("220 2.0.0 go ahead")
                    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    ctx.load_cert_chain(*self.tls)
                    c = ctx.wrap_socket(c, server_side=True)
                    f = c.makefile("rb")
                    state["tls"] = True
                elif verb == "AUTH":
                    parts = line.split()
                    import base64
                    if parts[1].upper() == "PLAIN":
                        if len(parts) > 2:
                            blob = parts[2]
                        else:
                            send("334 ")
                            blob = readline()
                        _, u, p = base64.b64decode(blob).split(b"\0")
                        u, p = u.decode(), p.decode()
                    else:
                        send("334 VXNlcm5hbWU6")
                        u = base64.b64decode(readline()).decode()
                        send("334 UGFzc3dvcmQ6")
                        p = base64.b64decode(readline()).decode()
                    with self.lock:
                        self.auth_seen.append((u, p, state["tls"]))
                    if self.auth and (u, p) == tuple(self.auth):
                        state["authed"] = True
                        send("235 2.7.0 Authentication successful")
                    else:
                        send("535 5.7.8 Authentication credentials invalid")
                elif verb == "MAIL":
                    if self.auth and not state["authed"]:
                        send("530 5.7.0 Authentication required")
                        continue
                    mail, rcpts = line[10:].split()[0].strip("<>"), []
                    send("250 2.1.0 Ok")
                elif verb == "RCPT":
                    addr = line[8:].split()[0].strip("<>")
                    with self.lock:
                        rep = self.rcpt_reply.get(addr, "250 2.1.5 Ok")
                    if rep.startswith("2"):
                        rcpts.append(addr)
                    send(rep)
                elif verb == "DATA":
                    if not rcpts:
                        send("554 5.5.1 No valid recipients")
                        continue
                    send("354 End data with <CR><LF>.<CR><LF>")
                    data = []
                    while True:
                        l = f.readline()
                        if not l:
                            raise EOFError
                        if l == b".\r\n":
                            break
                        data.append(l)
                    with self.lock:
                        self.messages.append({"mail": mail, "rcpts": list(rcpts),
                                              "data": b"".join(data), "tls": state["tls"],
                                              "auth": state["authed"]})
                        n = len(self.messages)
                    send("250 2.0.0 Ok: queued as TEST%04d" % n)
                elif verb == "RSET":
                    mail, rcpts = None, []
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                elif verb == "NOOP":
                    send("250 2.0.0 Ok")
                else:
                    send("502 5.5.2 Error: command not recognized")
        except (EOFError, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def receivers():
    made = []

    def make(host, port, **kw):
        r = Receiver(host, port, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def outbound(kurier_factory, unbound):
    """make(extra="", queue=None) -> (kurier, port): a kurierd relaying for 127/8 to
    the test zones, its remote SMTP port set to a free port P (receivers listen on
    127.0.0.x:P)."""

    def make(extra="", queue=None, out=None, start=True):
        port = free_port()
        o = {"port": port, "connect_timeout": "5s", "idle_time": "2s"}
        o.update(out or {})
        otext = "".join("    %s %s;\n" % kv for kv in o.items())
        k = kurier_factory(
            queue=queue,
            extra="resolver %s;\nrelay {\n    trusted_networks 127.0.0.0/8;\n}\n"
                  "outbound {\n%s}\n%s" % (unbound, otext, extra))
        k.add_domain("example.test")
        k.add_mailbox("demo@example.test", "demo")
        if start:
            k.start()
        return k, port

    return make


def submit(k, rcpts, sender="demo@example.test", subject="test", body="hello"):
    msg = "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s\r\n" % (
        sender, ", ".join(rcpts), subject, body)
    with smtplib.SMTP("127.0.0.1", k.port, timeout=30) as s:
        s.sendmail(sender, rcpts, msg)


def wait_for(pred, timeout=SAFETY, what="condition", k=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("%s not reached%s" % (
        what, ("; log:\n" + k.log()[-4000:]) if k else ""))


def smtp_lines(k, rcpt):
    return [l for l in k.log().splitlines()
            if "/smtp[" in l and "to=<%s>" % rcpt in l]


def wait_removed(k, line):
    """Wait until the message of a delivery log line has left the queue: no attempt
    can follow (a count to wait for, not a time)."""
    qid = re.search(r"\]: (\w+): to=<", line).group(1)
    k.wait_log("%s: removed" % qid)


# --- MX routing --------------------------------------------------------------------


def test_best_mx_down_second_gets_it(outbound, receivers):
    k, port = outbound()
    mx2 = receivers("127.0.0.22", port)  # mx1 (127.0.0.21, pref 10) has no listener
    submit(k, ["bob@pref.test"])
    wait_for(lambda: mx2.count("bob@pref.test") == 1, k=k, what="delivery to mx2")
    k.wait_log("status=sent")
    line = smtp_lines(k, "bob@pref.test")[-1]
    assert "relay=mx2.pref.test[127.0.0.22]:%d" % port in line, line
    assert "dsn=2.0.0" in line and "status=sent (250 2.0.0 Ok: queued as TEST0001)" in line, line
    assert re.search(r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+,", line), line


def test_equal_preferences_share_the_load(outbound):
    k, port = outbound(out={"idle_time": "0s"})
    top = tempfile.mkdtemp(prefix="kurier-sink-")
    os.chmod(top, 0o755)  # smtp-sink writes as user postfix
    ips = ("127.0.0.23", "127.0.0.24")
    dumps = [os.path.join(top, ip) for ip in ips]
    try:
        with contextlib.ExitStack() as sinks:
            for ip, d in zip(ips, dumps):
                sinks.enter_context(peers.smtp_sink(d, ip, port))
            n = 16
            for i in range(n):
                submit(k, ["user%d@equal.test" % i])

            def counts():
                return [len(os.listdir(d)) for d in dumps]

            wait_for(lambda: sum(counts()) >= n, k=k, what="16 deliveries")
            a, b = counts()
            assert a > 0 and b > 0, (a, b)  # shuffled: both hosts used
            assert a + b == n
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_implicit_mx(outbound, receivers):
    k, port = outbound()
    r = receivers("127.0.0.25", port)
    submit(k, ["carol@implicit.test"])
    wait_for(lambda: r.count("carol@implicit.test") == 1, k=k, what="implicit MX delivery")
    k.wait_log("relay=implicit.test[127.0.0.25]:%d" % port)


def test_null_mx_bounces_at_once(outbound):
    k, port = outbound()
    submit(k, ["nobody@nullmx.test"])
    k.wait_log("status=bounced")
    wait_removed(k, smtp_lines(k, "nobody@nullmx.test")[0])  # no further attempt
    lines = smtp_lines(k, "nobody@nullmx.test")
    assert len(lines) == 1, lines
    assert "dsn=5.1.10" in lines[0] and "null MX" in lines[0], lines[0]
    assert "relay=none" in lines[0]


def test_nxdomain_bounces(outbound):
    k, port = outbound()
    submit(k, ["x@nxdomain.test"])
    k.wait_log("status=bounced")
    line = smtp_lines(k, "x@nxdomain.test")[0]
    assert "dsn=5.1.2" in line and "type=MX: Host not found" in line, line


def test_mx_pointing_to_us_is_a_loop(outbound):
    k, port = outbound()  # conftest: hostname mx.example.test
    submit(k, ["x@self.test"])
    k.wait_log("status=bounced")
    line = smtp_lines(k, "x@self.test")[0]
    assert "dsn=5.4.6" in line and "MX points back to us" in line, line


# --- per-recipient results ----------------------------------------------------------


def test_mixed_results_then_retry(outbound, receivers):
    k, port = outbound()
    r = receivers("127.0.0.26", port, rcpt_reply={
        "bad@mixed.test": "550 5.1.1 <bad@mixed.test>: Recipient address rejected: unknown user",
        "grey@mixed.test": "451 4.7.1 Greylisted, try again later",
    })
    submit(k, ["ok@mixed.test", "bad@mixed.test", "grey@mixed.test"])
    k.wait_log("to=<grey@mixed.test>")
    wait_for(lambda: smtp_lines(k, "bad@mixed.test"), k=k)
    ok = smtp_lines(k, "ok@mixed.test")[0]
    bad = smtp_lines(k, "bad@mixed.test")[0]
    grey = smtp_lines(k, "grey@mixed.test")[0]
    assert "status=sent" in ok, ok
    assert "dsn=5.1.1" in bad and "status=bounced (host mx.mixed.test[127.0.0.26] said: 550 " \
        "5.1.1 <bad@mixed.test>: Recipient address rejected: unknown user [in reply to RCPT " \
        "TO command])" in bad, bad
    assert "dsn=4.7.1" in grey and "status=deferred (host mx.mixed.test[127.0.0.26] said: " \
        "451 4.7.1 Greylisted, try again later [in reply to RCPT TO command])" in grey, grey
    assert r.count() == 1 and r.messages[0]["rcpts"] == ["ok@mixed.test"]
    # the greylisting is over: the retry delivers the deferred one only
    with r.lock:
        del r.rcpt_reply["grey@mixed.test"]
    wait_for(lambda: r.count("grey@mixed.test") == 1, k=k, what="retry after greylisting")
    wait_for(lambda: any("status=sent" in l for l in smtp_lines(k, "grey@mixed.test")), k=k)
    wait_removed(k, ok)
    assert r.count("ok@mixed.test") == 1 and r.count("bad@mixed.test") == 0
    assert len(smtp_lines(k, "bad@mixed.test")) == 1


def test_lifetime_expiry_bounces(outbound):
    # nothing listens on mx.expire.test: deferred until the lifetime (10 seconds) is
    # over; the first attempts are deferred, the last one bounces
    k, port = outbound(queue={"lifetime": "10s", "retry_first": "1s", "retry_max": "5s"})
    submit(k, ["late@expire.test"])
    k.wait_log("status=deferred")
    line = smtp_lines(k, "late@expire.test")[0]
    assert "dsn=4.4.1" in line and "connect to mx.expire.test[127.0.0.27]:%d" % port in line, line
    k.wait_log("status=bounced", timeout=300)  # lifetime 10s, then safety
    lines = smtp_lines(k, "late@expire.test")
    assert all("status=deferred" in l for l in lines[:-1]), lines
    assert "dsn=5.4.7" in lines[-1] and "message expired after 10 seconds" in lines[-1], lines


def test_lifetime_ends_before_the_next_retry(outbound):
    # the next retry would be an hour after the first try, long after the lifetime of
    # 10 seconds: the message is tried once more when its lifetime ends and bounces
    # then, not an hour later (the wait below gives up long before the hour)
    k, port = outbound(queue={"lifetime": "10s", "retry_first": "1h", "retry_max": "1h"})
    submit(k, ["later@expire.test"])
    k.wait_log("status=bounced", timeout=300)  # lifetime 10s, then safety
    lines = smtp_lines(k, "later@expire.test")
    assert len(lines) == 2 and "status=deferred" in lines[0], lines
    assert "dsn=5.4.7" in lines[1] and "message expired after 10 seconds" in lines[1], lines


# --- smarthosts -------------------------------------------------------------------


def test_relay_host_with_fallback(outbound, receivers):
    # the first relay has no listener: the second (by name) takes everything
    p2 = free_port("127.0.0.29")
    k, port = outbound(extra="relay_host 127.0.0.28:%d smtp.smarthost.test:%d;\n" % (p2, p2))
    r = receivers("127.0.0.29", p2)
    submit(k, ["someone@pref.test", "other@equal.test"])
    wait_for(lambda: r.count() >= 1 and r.count("someone@pref.test") == 1
             and r.count("other@equal.test") == 1, k=k, what="relay delivery")
    # the receiver has the message before kurier has its reply and logs the result
    wait_for(lambda: any("status=sent" in l for l in smtp_lines(k, "someone@pref.test")),
             k=k, what="the delivery's log line")
    line = smtp_lines(k, "someone@pref.test")[-1]
    assert "relay=smtp.smarthost.test[127.0.0.29]:%d" % p2 in line and "status=sent" in line


@pytest.fixture(scope="module")
def certpair(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    key, cert = str(d / "key.pem"), str(d / "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=smtp.smarthost.test",
                    "-addext", "subjectAltName=DNS:smtp.smarthost.test"],
                   check=True, capture_output=True)
    return cert, key


def relay_add(k, match, hosts, user=None, password=None, tls=None):
    args = ["relay", "add", match, hosts]
    if user:
        args += ["--user", user, "--password-stdin"]
    if tls:
        args += ["--tls", tls]
    r = k.cli(*args, input=(password + "\n").encode() if password else None, check=False)
    if r.returncode == 0:
        return
    # "relay" not yet wired into the kurier command: write the directory row directly
    db = os.path.join(k.dir, "var", "kurier.db")
    con = sqlite3.connect(db)
    con.execute("INSERT OR REPLACE INTO relay_routes (match, hosts, username, password, tls) "
                "VALUES (?, ?, ?, ?, ?)", (match, hosts, user or "", password or "", tls or ""))
    con.commit()
    con.close()


def test_sender_relay_with_auth_over_starttls(outbound, receivers, certpair):
    secret = "S3cr3t-Pa55-for-the-log-check"
    k, port = outbound(start=False)
    rport = free_port("127.0.0.30")
    k.start()  # creates the schema
    relay_add(k, "@example.test", "127.0.0.30:%d" % rport, "customer@provider.test", secret)
    r = receivers("127.0.0.30", rport, tls=certpair, auth=("customer@provider.test", secret))
    submit(k, ["friend@relayed.test"])
    wait_for(lambda: r.count("friend@relayed.test") == 1, k=k, what="delivery via sender relay")
    m = r.messages[0]
    assert m["tls"] and m["auth"], m
    assert all(tls for _, _, tls in r.auth_seen), r.auth_seen
    k.wait_log("status=sent")
    assert secret not in k.log()
    # a route with a login but tls none is refused: the password never goes in clear
    relay_add(k, "@example.test", "127.0.0.30:%d" % rport, "customer@provider.test", secret,
              tls="none")
    submit(k, ["friend2@relayed.test"])
    k.wait_log("to=<friend2@relayed.test>")
    line = smtp_lines(k, "friend2@relayed.test")[0]
    assert "status=deferred" in line and "never sent without TLS" in line, line
    assert r.count("friend2@relayed.test") == 0
    assert secret not in k.log()


def test_relays_on_implicit_tls(outbound, receivers, certpair, tmp_path):
    """Port 465 (RFC 8314): a sender relay with a login and `--tls implicit`, and the
    relay_host smarthost with `relay_host_tls implicit`, get TLS from the first byte;
    the certificate is checked as outbound { tls verify; ca_file } say; `kurier smtp
    send --tls implicit` speaks it too."""
    secret = "Implicit-Pa55-for-the-log-check"
    rport = free_port("127.0.0.32")
    ca = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)  # readable by kurier
    ca.write(open(certpair[0], "rb").read())
    ca.close()
    os.chmod(ca.name, 0o644)
    k, port = outbound(
        start=False, out={"tls": "verify", "ca_file": ca.name},
        extra="relay_host smtp.smarthost.test:%d;\nrelay_host_tls implicit;\n" % rport)
    k.start()
    relay_add(k, "@example.test", "127.0.0.32:%d" % rport, "customer@provider.test", secret,
              tls="implicit")
    r = receivers("127.0.0.32", rport, tls=certpair, implicit=True,
                  auth=("customer@provider.test", secret))
    s = receivers("127.0.0.29", rport, tls=certpair, implicit=True)
    # the sender relay (IP literal: the certificate names smtp.smarthost.test, so
    # verify fails and the mail waits) ...
    submit(k, ["friend@relayed.test"])
    k.wait_log("to=<friend@relayed.test>")
    line = smtp_lines(k, "friend@relayed.test")[0]
    assert "status=deferred" in line and "certificate verification failed" in line, line
    assert r.count() == 0 and not r.auth_seen
    # ... and with verification as "encrypt" it goes, AUTH inside TLS
    k.stop()
    with open(k.conf) as f:
        text = f.read()
    with open(k.conf, "w") as f:
        f.write(text.replace("tls verify;", "tls may;"))
    k.start()
    k.cli("queue", "flush", check=False)
    wait_for(lambda: r.count("friend@relayed.test") == 1, k=k, what="delivery via port 465 relay")
    m = r.messages[0]
    assert m["tls"] and m["auth"], m
    assert r.auth_seen and all(t for _, _, t in r.auth_seen), r.auth_seen
    # the smarthost (no sender route for this sender), verified by name
    k.stop()
    with open(k.conf, "w") as f:
        f.write(text)
    k.start()
    submit(k, ["other@equal.test"], sender="nobody@elsewhere.test")
    wait_for(lambda: s.count("other@equal.test") == 1, k=k, what="delivery via smarthost 465")
    wait_for(lambda: any("status=sent" in l for l in smtp_lines(k, "other@equal.test")), k=k,
             what="the smarthost delivery's log line")
    assert "Verified TLS connection established to smtp.smarthost.test" in k.log()
    assert secret not in k.log()
    # the CLI
    msg = tmp_path / "m.eml"
    msg.write_text("Subject: cli\n\nhello\n")
    out = k.cli("smtp", "send", "--to", "127.0.0.29:%d" % rport, "--tls", "implicit",
                "--from", "a@example.test", "--rcpt", "cli@equal.test", str(msg))
    assert "TLS: TLS" in out.stdout.decode(), out.stdout
    assert s.count("cli@equal.test") == 1
    # a plain SMTP server where implicit TLS is expected: a clear failure, no plain text
    plain = receivers("127.0.0.33", rport)
    out = k.cli("smtp", "send", "--to", "127.0.0.33:%d" % rport, "--tls", "implicit",
                "--from", "a@example.test", "--rcpt", "x@equal.test", str(msg), check=False)
    assert out.returncode != 0 and "TLS handshake" in (out.stdout + out.stderr).decode(), out
    assert plain.count() == 0
    os.unlink(ca.name)


def test_idn_domain_looked_up_as_a_label(outbound, receivers):
    """SMTPUTF8 mail to kunde@bücher.test: the MX lookup asks for xn--bcher-kva.test
    (the only name the test DNS knows) and the mail is delivered; a domain IDNA2008
    refuses gets 501 5.1.3 at RCPT, naming the reason."""
    k, port = outbound()
    r = receivers("127.0.0.34", port, smtputf8=True)
    rcpt = "kunde@bücher.test"
    msg = ("From: demo@example.test\r\nTo: %s\r\nSubject: idn\r\n\r\nhallo\r\n" % rcpt)
    with smtplib.SMTP("127.0.0.1", k.port, timeout=30) as s:
        s.ehlo()
        s.command_encoding = "utf-8"
        s.sendmail("demo@example.test", [rcpt], msg.encode(), mail_options=["SMTPUTF8"])
        code, text = s.docmd("MAIL FROM:<demo@example.test> SMTPUTF8")
        assert code == 250
        code, text = s.docmd("RCPT TO:<kunde@b\u2603cher.test>")
        assert code == 501 and text.startswith(b"5.1.3"), (code, text)
        assert b"invalid international domain name" in text, text
    wait_for(lambda: r.count(rcpt) == 1, k=k, what="delivery to the IDN domain")
    logged = rcpt.encode().decode("ascii", "backslashreplace")  # the log escapes 8-bit
    wait_for(lambda: any("status=sent" in l for l in smtp_lines(k, logged)), k=k,
             what="the delivery's log line")
    assert "relay=mx.xn--bcher-kva.test[127.0.0.34]" in smtp_lines(k, logged)[-1]


# --- restart ----------------------------------------------------------------------


def test_restart_keeps_the_retry_schedule(outbound, receivers):
    k, port = outbound(queue={"retry_first": "3s", "retry_max": "3s"})
    r = receivers("127.0.0.31", port, rcpt_reply={
        "later@restart.test": "451 4.3.0 Try again later"})
    submit(k, ["later@restart.test"])
    k.wait_log("status=deferred")
    k.stop()
    with r.lock:
        r.rcpt_reply.clear()
    k.start()
    assert "1 message in the queue" in k.log()
    wait_for(lambda: r.count("later@restart.test") == 1, k=k, what="delivery after restart")
    wait_for(lambda: any("status=sent" in l for l in smtp_lines(k, "later@restart.test")), k=k)
    assert len(smtp_lines(k, "later@restart.test")) == 2


# --- logs -------------------------------------------------------------------------


def test_pflogsumm_counts_remote_deliveries(outbound, receivers):
    k, port = outbound()
    r = receivers("127.0.0.26", port, rcpt_reply={
        "bad@mixed.test": "550 5.1.1 unknown user"})
    for i in range(3):
        submit(k, ["ok%d@mixed.test" % i])
    submit(k, ["bad@mixed.test"])
    wait_for(lambda: r.count() == 3, k=k)
    k.wait_log("status=bounced")
    # the trusted local sender gets a bounce, delivered to its Maildir: 3 remote
    # deliveries + 1 local one, each logged before the daemon stops
    k.wait_log("sender non-delivery notification:")
    wait_for(lambda: k.log().count("status=sent") == 4, k=k)
    k.stop()
    out = subprocess.run([PFLOGSUMM, "--syslog-name=kurier", k.logfile],
                         capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"^\s*(\d+)\s+delivered", out, re.M)
    assert m and int(m.group(1)) == 4, out[:2000]
    m = re.search(r"^\s*(\d+)\s+bounced", out, re.M)
    assert m and int(m.group(1)) == 1, out[:2000]
