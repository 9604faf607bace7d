#!/usr/bin/python3
"""DKIM signing (RFC 6376, RFC 8463) through the real daemon: keys made by "kurier
dkim keygen", mail submitted with AUTH or by sendmail(1) goes out through a scripted
receiver, and independent verifiers check what arrived, with the public keys served
by the loopback DNS server: Debian's python3-dkim (dkimpy) and OpenDKIM's
opendkim-testmsg. Also: a changed message fails, retries send identical bytes,
forwarded mail is not signed, "kurier dkim check" notices a wrong record."""

import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading

import dkim
import dnslib
import pytest

from conftest import SAFETY, free_port
from spfdns import SpfDNS

HERE = os.path.dirname(os.path.abspath(__file__))


class Sink:
    """An SMTP receiver on 127.0.0.1 keeping each message's bytes as sent (dot
    unstuffed, CRLF kept). The first tempfail DATA answers get 451 after the data."""

    def __init__(self, tempfail=0):
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.tempfail = tempfail
        self.stop_flag = False
        self.messages = []  # (accepted, bytes)
        self.cv = threading.Condition()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop_flag:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        c.settimeout(SAFETY)
        f = c.makefile("rb")
        c.sendall(b"220 mx.remote.test ESMTP\r\n")
        try:
            for raw in f:
                verb = raw[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    c.sendall(b"250-mx.remote.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                              b"250 SIZE 100000000\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    body = []
                    for d in f:
                        if d == b".\r\n":
                            break
                        body.append(d[1:] if d.startswith(b".") else d)
                    with self.cv:
                        ok = self.tempfail <= 0
                        self.tempfail -= 1
                        self.messages.append((ok, b"".join(body)))
                        self.cv.notify_all()
                    c.sendall(b"250 2.0.0 ok\r\n" if ok else b"451 4.3.0 try again\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 2.0.0 bye\r\n")
                    break
                else:
                    c.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            pass
        c.close()

    def wait(self, count):
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.messages) >= count, timeout=SAFETY), \
                "%d of %d messages arrived" % (len(self.messages), count)
            return [m for _, m in self.messages]

    def stop(self):
        self.stop_flag = True
        self.t.join(timeout=5)
        self.sock.close()


def split_txt(rec):
    """A TXT record value as strings of at most 255 bytes."""
    return [rec[i:i + 250] for i in range(0, len(rec), 250)]


def keygen(k, domain, *args):
    """kurier dkim keygen; returns (selector, the TXT record value)."""
    out = k.cli("dkim", "keygen", domain, *args).stdout.decode()
    m = re.match(r"(\S+)\._domainkey\.%s\. IN TXT \((.*)\)\s*$" % re.escape(domain), out, re.S)
    assert m, out
    return m.group(1), "".join(re.findall(r'"([^"]*)"', m.group(2)))


class Setup:
    pass


@pytest.fixture
def dk(kurier_factory):
    """kurierd with rsa and ed25519 keys for example.test, AUTH on a plaintext
    submission listener (loopback), remote mail relayed to a Sink, and the keys'
    records in the loopback DNS."""
    s = Setup()
    s.sink = Sink(tempfail=0)
    s.dns_port = free_port()
    s.dns = SpfDNS(s.dns_port)
    s.dns.start()
    k = kurier_factory()
    s.k = k
    k.sub_port = free_port()
    with open(k.conf, "a") as f:
        f.write("relay_host 127.0.0.1:%d;\nresolver 127.0.0.1@%d;\n" % (s.sink.port, s.dns_port))
        f.write("dkim {\n    key_dir %s/dkim;\n}\n" % k.dir)
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    auth_plaintext on;\n}\n"
                % k.sub_port)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.cli("alias", "add", "fwd@example.test", "friend@remote.test")
    s.rsa_sel, s.rsa_rec = keygen(k, "example.test")
    s.ed_sel, s.ed_rec = keygen(k, "example.test", "--type", "ed25519", "--selector", "ed1")
    s.zone = {
        "%s._domainkey.example.test" % s.rsa_sel: [{"TXT": split_txt(s.rsa_rec)}],
        "ed1._domainkey.example.test": [{"TXT": s.ed_rec}],
    }
    s.dns.load(s.zone)
    k.start()
    yield s
    s.dns.stop()
    s.sink.stop()


def submit(s, msg, rcpt="friend@remote.test", opts=()):
    with smtplib.SMTP("127.0.0.1", s.k.sub_port, timeout=SAFETY) as c:
        c.login("demo@example.test", "demo")
        c.sendmail("demo@example.test", [rcpt], msg, mail_options=list(opts))


def dnsfunc(port):
    """dkimpy's DNS lookup, asking the loopback server (a real DNS query)."""
    def ask(name, timeout=5):
        q = dnslib.DNSRecord.question(name.decode().rstrip("."), "TXT")
        r = dnslib.DNSRecord.parse(q.send("127.0.0.1", port, timeout=timeout))
        for rr in r.rr:
            if rr.rtype == dnslib.QTYPE.TXT:
                return b"".join(rr.rdata.data)
        return None
    return ask


def dkimpy_results(s, msg):
    """dkimpy's verdict for each DKIM-Signature, top to bottom: (a=, ok)."""
    d = dkim.DKIM(msg)
    n = len(re.findall(rb"(?mi)^DKIM-Signature:", msg.split(b"\r\n\r\n", 1)[0]))
    out = []
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc(s.dns_port))
        except dkim.ValidationError:
            ok = False
        out.append((d.signature_fields[b"a"].decode(), bool(ok)))
    return out


def opendkim(s, msg):
    """opendkim-testmsg's verdict: (exit status, output)."""
    zf = os.path.join(s.k.dir, "zone.json")
    mf = os.path.join(s.k.dir, "msg.eml")
    with open(zf, "w") as f:
        json.dump(s.zone, f)
    with open(mf, "wb") as f:
        f.write(msg)
    r = subprocess.run(["unshare", "-nm", "/usr/bin/python3", os.path.join(HERE, "dkim_ns.py"),
                        zf, mf], capture_output=True, timeout=SAFETY)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def only_signature(msg, algo):
    """msg with only the DKIM-Signature field of algorithm algo (opendkim-testmsg
    judges the first signature it reads)."""
    head, body = msg.split(b"\r\n\r\n", 1)
    fields = re.split(rb"\r\n(?![ \t])", head)
    keep = [f for f in fields if not f.lower().startswith(b"dkim-signature:")
            or (b"a=" + algo.encode() + b";") in f]
    return b"\r\n".join(keep) + b"\r\n\r\n" + body


def check_signed(s, msg):
    head = msg.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
                           b"d=example.test;"), head[:300]
    assert b"a=ed25519-sha256" in head
    assert dkimpy_results(s, msg) == [("rsa-sha256", True), ("ed25519-sha256", True)]
    for algo in ("rsa-sha256", "ed25519-sha256"):
        rc, out = opendkim(s, only_signature(msg, algo))
        assert rc == 0, "%s: opendkim-testmsg: %s" % (algo, out)


MSG_7BIT = ("From: Demo <demo@example.test>\r\nTo: friend@remote.test\r\n"
            "Subject: plain\r\nMessage-ID: <m1@example.test>\r\n"
            "Date: Sun, 6 Dec 2026 10:00:00 +0000\r\n\r\nHello.\r\n\r\n\r\n")


def test_signed_7bit_message_verifies_with_both_algorithms(dk):
    """A 7-bit message gets an rsa-sha256 and an ed25519-sha256 signature (the
    domain has both keys), relaxed/relaxed, From over-signed; dkimpy and OpenDKIM
    both say pass for each."""
    submit(dk, MSG_7BIT)
    msg, = dk.sink.wait(1)
    check_signed(dk, msg)
    sig = re.search(rb"(?s)DKIM-Signature: (.*?)\r\n(?![ \t])", msg).group(1)
    h = re.sub(rb"\s", b"", re.search(rb"h=([^;]*);", sig).group(1)).split(b":")
    assert h.count(b"from") == 2 and h[-1] == b"from"
    assert b"subject" in h and b"message-id" in h and b"date" in h
    assert "DKIM signed d=example.test" in dk.k.log()


def test_signed_8bit_utf8_folded_headers(dk):
    """8-bit UTF-8 body, folded fields (To:, an encoded-word Subject:), fields that
    may repeat (Comments:), whitespace at line ends, a leading dot and trailing empty
    lines: both verifiers say pass."""
    msg = ("From: =?utf-8?q?D=C3=A9mo?= <demo@example.test>\r\n"
           "To: friend@remote.test,\r\n\tsecond@remote.test\r\n"
           "Comments: one\r\nComments: two\r\n"
           "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=   aus\r\n  =?utf-8?q?K=C3=B6ln?= \t\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n"
           "Sch\u00f6ne Gr\u00fc\u00dfe \t \r\n  indented\r\n.leading dot\r\n\r\n\r\n")
    submit(dk, msg.encode("utf-8"), opts=["BODY=8BITMIME"])
    got, = dk.sink.wait(1)
    assert "Sch\u00f6ne".encode() in got
    check_signed(dk, got)


def test_signed_duplicate_fields_and_raw_utf8_header(dk):
    """Two To: and two Subject: fields (both instances are signed, h= names them
    twice) and a raw UTF-8 Subject: (RFC 6532): dkimpy says pass. OpenDKIM refuses
    such a header section before it looks at signatures (RFC 5322 3.6 allows one
    To: and one Subject:, and it takes 8-bit headers as a syntax error)."""
    msg = ("From: demo@example.test\r\nTo: friend@remote.test\r\nTo: third@remote.test\r\n"
           "Subject: Gr\u00fc\u00dfe   aus\r\n  K\u00f6ln \t\r\nSubject: second subject\r\n"
           "\r\nbody\r\n")
    submit(dk, msg.encode("utf-8"), opts=["BODY=8BITMIME", "SMTPUTF8"])
    got, = dk.sink.wait(1)
    sig = re.search(rb"(?s)DKIM-Signature: (.*?)\r\n(?![ \t])", got).group(1)
    h = re.sub(rb"\s", b"", re.search(rb"h=([^;]*);", sig).group(1)).split(b":")
    assert h.count(b"to") == 2 and h.count(b"subject") == 2
    assert dkimpy_results(dk, got) == [("rsa-sha256", True), ("ed25519-sha256", True)]
    changed = got.replace(b"Subject: second subject", b"Subject: second subjecT")
    assert dkimpy_results(dk, changed) == [("rsa-sha256", False), ("ed25519-sha256", False)]


def test_signed_multi_megabyte_message(dk):
    """A 3 MB message (the body hash is computed as it streams to disk)."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n"
    body = line * (3 * 1024 * 1024 // len(line))
    submit(dk, MSG_7BIT.encode().split(b"\r\n\r\n")[0] + b"\r\n\r\n" + body)
    got, = dk.sink.wait(1)
    assert len(got) > 3 * 1024 * 1024 - 100
    check_signed(dk, got)


def test_changed_message_fails(dk):
    """A changed body, a changed Subject: or a From: added on top (over-signing)
    break both signatures, for both verifiers."""
    submit(dk, MSG_7BIT)
    msg, = dk.sink.wait(1)
    variants = [msg.replace(b"Hello.", b"Hellp."),
                msg.replace(b"Subject: plain", b"Subject: plaim"),
                b"From: evil@attacker.test\r\n" + msg]
    for v in variants:
        assert dkimpy_results(dk, v) == [("rsa-sha256", False), ("ed25519-sha256", False)]
        for algo in ("rsa-sha256", "ed25519-sha256"):
            rc, out = opendkim(dk, only_signature(v, algo))
            assert rc != 0, "%s passed a changed message: %s" % (algo, out)


def test_retry_sends_identical_bytes(kurier_factory, dk):
    """The receiver answers the first DATA with 451: the retry sends the very same
    bytes (signed once, at enqueue)."""
    dk.sink.tempfail = 1
    submit(dk, MSG_7BIT)
    first, second = dk.sink.wait(2)
    assert first == second
    check_signed(dk, second)


def test_local_sender_signed(dk):
    """sendmail(1) (through the maildrop and pickup) is signed too."""
    r = subprocess.run([os.path.join(os.environ.get("KURIER_BUILD", ""), "sendmail"), "-t",
                        "-f", "demo@example.test"], input=MSG_7BIT.encode(),
                       capture_output=True, timeout=SAFETY,
                       env=dict(os.environ, KURIER_CONF=dk.k.conf))
    assert r.returncode == 0, r.stderr
    msg, = dk.sink.wait(1)
    msg = msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    check_signed(dk, msg)


def test_forwarded_mail_not_signed(dk):
    """Mail from outside for an alias that forwards to a remote address goes on
    unsigned: it is not ours (only authenticated and local senders are signed)."""
    with smtplib.SMTP("127.0.0.1", dk.k.port, timeout=SAFETY) as c:
        c.sendmail("someone@elsewhere.test", ["fwd@example.test"],
                   MSG_7BIT.replace("demo@example.test", "someone@example.test"))
    msg, = dk.sink.wait(1)
    assert b"DKIM-Signature" not in msg


def test_domain_without_key_not_signed(dk):
    """From: a domain without keys (and no signing_domain): unsigned."""
    dk.k.add_domain("nokey.test")
    dk.k.add_mailbox("x@nokey.test", "x")
    with smtplib.SMTP("127.0.0.1", dk.k.sub_port, timeout=SAFETY) as c:
        c.login("x@nokey.test", "x")
        c.sendmail("x@nokey.test", ["friend@remote.test"],
                   MSG_7BIT.replace("demo@example.test", "x@nokey.test"))
    msg, = dk.sink.wait(1)
    assert b"DKIM-Signature" not in msg


def test_keygen_modes(dk):
    """keygen writes keys readable by the daemon's user only (0600) in folders of mode
    0750 (docs/dkim.md)."""
    folder = os.path.join(dk.k.dir, "dkim", "example.test")
    assert os.stat(folder).st_mode & 0o777 == 0o750, oct(os.stat(folder).st_mode)
    files = sorted(os.listdir(folder))
    assert files == sorted(["%s.rsa.pem" % dk.rsa_sel, "ed1.ed25519.pem"]), files
    for name in files:
        mode = os.stat(os.path.join(folder, name)).st_mode & 0o777
        assert mode == 0o600, (name, oct(mode))


def test_signing_domain_for_customers_without_keys(dk):
    """A customer domain without keys is signed with dkim.signing_domain's keys
    (example.test here) once it is configured (SIGHUP), and verifies."""
    dk.k.add_domain("nokey.test")
    dk.k.add_mailbox("x@nokey.test", "x")
    with open(dk.k.conf) as f:
        conf = f.read()
    assert "    key_dir " in conf
    with open(dk.k.conf, "w") as f:
        f.write(conf.replace("    key_dir ", "    signing_domain example.test;\n    key_dir ", 1))
    dk.k.proc.send_signal(signal.SIGHUP)
    dk.k.wait_log("reloaded configuration from")
    with smtplib.SMTP("127.0.0.1", dk.k.sub_port, timeout=SAFETY) as c:
        c.login("x@nokey.test", "x")
        c.sendmail("x@nokey.test", ["friend@remote.test"],
                   MSG_7BIT.replace("demo@example.test", "x@nokey.test"))
    msg, = dk.sink.wait(1)
    check_signed(dk, msg)


def test_dkim_check_notices_mismatch(dk):
    """kurier dkim check: both records match (exit 0); after the RSA record is
    replaced by another key's it says mismatch and exits 1; without a record,
    missing."""
    r = dk.k.cli("dkim", "check", "example.test", "--resolver", "127.0.0.1@%d" % dk.dns_port)
    out = r.stdout.decode()
    assert "%s._domainkey.example.test rsa ok" % dk.rsa_sel in out, out
    assert "ed1._domainkey.example.test ed25519 ok" in out, out
    other = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                            "rsa_keygen_bits:1024"], capture_output=True, check=True).stdout
    pub = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=other,
                         capture_output=True, check=True).stdout
    import base64
    zone = dict(dk.zone)
    zone["%s._domainkey.example.test" % dk.rsa_sel] = [
        {"TXT": split_txt("v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode())}]
    del zone["ed1._domainkey.example.test"]
    dk.dns.load(zone)
    r = dk.k.cli("dkim", "check", "example.test", "--resolver", "127.0.0.1@%d" % dk.dns_port,
                 check=False)
    out = r.stdout.decode()
    assert r.returncode == 1
    assert "rsa mismatch" in out and "not this key's public key" in out, out
    assert "ed25519 missing" in out, out


def test_dns_records_and_check(kurier_factory):
    """kurier dns records prints MX, SPF with the egress addresses (monitor.addresses),
    DKIM, DMARC, MTA-STS, TLS-RPT and the PTRs; --check finds everything in place
    (exit 0), then names each difference: SPF lacking an address, a wrong PTR, a DKIM
    record of another key, no DMARC record (exit 1)."""
    dns = SpfDNS(free_port())
    dns.start()
    try:
        k = kurier_factory(extra="monitor {\n    addresses 192.0.2.10 2001:db8::25;\n}\n")
        with open(k.conf, "a") as f:
            f.write("dkim {\n    key_dir %s/dkim;\n}\n" % k.dir)
        sel, rec = keygen(k, "customer.test")
        out = k.cli("dns", "records", "customer.test").stdout.decode()
        assert "customer.test. IN MX 10 mx.example.test." in out, out
        assert 'customer.test. IN TXT "v=spf1 ip4:192.0.2.10 ip6:2001:db8::25 ~all"' in out
        assert "%s._domainkey.customer.test. IN TXT" % sel in out
        assert '_dmarc.customer.test. IN TXT "v=DMARC1; p=none;' in out
        assert "_mta-sts.customer.test. IN TXT" in out and "_smtp._tls.customer.test." in out
        assert "10.2.0.192.in-addr.arpa. IN PTR mx.example.test." in out
        good = {
            "customer.test": [{"MX": [10, "mx.example.test"]},
                              {"TXT": "v=spf1 ip4:192.0.2.10 ip6:2001:db8::25 ~all"}],
            "%s._domainkey.customer.test" % sel: [{"TXT": split_txt(rec)}],
            "_dmarc.customer.test": [{"TXT": "v=DMARC1; p=none"}],
            "_mta-sts.customer.test": [{"TXT": "v=STSv1; id=1"}],
            "_smtp._tls.customer.test": [{"TXT": "v=TLSRPTv1; rua=mailto:a@customer.test"}],
            "10.2.0.192.in-addr.arpa": [{"PTR": "mx.example.test"}],
            "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa":
                [{"PTR": "mx.example.test"}],
        }
        dns.load(good)
        res = "127.0.0.1@%d" % dns.port
        r = k.cli("dns", "records", "customer.test", "--check", "--resolver", res, check=False)
        out = r.stdout.decode()
        assert r.returncode == 0 and "0 differences" in out, out
        bad = dict(good)
        bad["customer.test"] = [{"MX": [10, "mx.example.test"]},
                                {"TXT": "v=spf1 ip4:192.0.2.10 ~all"}]
        bad["10.2.0.192.in-addr.arpa"] = [{"PTR": "host.isp.test"}]
        _, other = keygen(k, "other.test")
        bad["%s._domainkey.customer.test" % sel] = [{"TXT": split_txt(other)}]
        del bad["_dmarc.customer.test"]
        dns.load(bad)
        r = k.cli("dns", "records", "customer.test", "--check", "--resolver", res, check=False)
        out = r.stdout.decode()
        assert r.returncode == 1, out
        assert "DIFF SPF: v=spf1 ip4:192.0.2.10 ~all lacks ip6:2001:db8::25" in out, out
        assert "DIFF PTR 192.0.2.10: DNS has host.isp.test, expected mx.example.test" in out
        assert "DIFF %s._domainkey.customer.test rsa mismatch" % sel in out, out
        assert "DIFF DMARC: no \"v=DMARC1\" record at _dmarc.customer.test" in out, out
        assert "ok   MX:" in out and "4 differences" in out, out
    finally:
        dns.stop()


def test_dkim_rotate_and_retire(dk):
    """rotate adds a new selector; after a reload (SIGHUP) it signs, and the old key
    stays (published) until retire; the signing key cannot be retired."""
    k = dk.k
    r = k.cli("dkim", "rotate", "example.test", "--type", "rsa", "--selector", "k2")
    out = r.stdout.decode()
    assert "k2._domainkey.example.test. IN TXT" in out
    listing = k.cli("dkim", "list", "example.test").stdout.decode()
    assert "example.test k2 rsa signing" in listing, listing
    assert "example.test %s rsa old" % dk.rsa_sel in listing, listing
    rec = "".join(re.findall(r'"([^"]*)"', out))
    dk.zone["k2._domainkey.example.test"] = [{"TXT": split_txt(rec)}]
    dk.dns.load(dk.zone)
    k.proc.send_signal(signal.SIGHUP)
    k.wait_log("reloaded configuration")
    submit(dk, MSG_7BIT)
    msg, = dk.sink.wait(1)
    assert re.search(rb"a=rsa-sha256; [^\r]*\r\n\ts=k2;", msg), msg[:400]
    assert dkimpy_results(dk, msg) == [("rsa-sha256", True), ("ed25519-sha256", True)]
    r = k.cli("dkim", "retire", "example.test", "k2", check=False)
    assert r.returncode == 1 and b"rotate first" in r.stderr
    r = k.cli("dkim", "retire", "example.test", dk.rsa_sel)
    assert b"removed" in r.stdout
    assert "%s rsa" % dk.rsa_sel not in k.cli("dkim", "list").stdout.decode()


def test_bad_key_file_refused(kurier_factory):
    """A key file that is not a key of its type stops the start (kurierd -t says
    which file and why); one of 512 bits too (RFC 8301)."""
    from conftest import KURIERD
    k = kurier_factory()
    with open(k.conf, "a") as f:
        f.write("dkim {\n    key_dir %s/dkim;\n}\n" % k.dir)
    os.makedirs(os.path.join(k.dir, "dkim", "example.test"))
    bad = os.path.join(k.dir, "dkim", "example.test", "s1.rsa.pem")
    with open(bad, "w") as f:
        f.write("not a key\n")
    r = subprocess.run([KURIERD, "-c", k.conf, "-t"], capture_output=True, timeout=SAFETY)
    assert r.returncode == 1 and b"s1.rsa.pem: not a PEM private key" in r.stderr, r.stderr
    small = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                            "rsa_keygen_bits:512"], capture_output=True, check=True).stdout
    with open(bad, "wb") as f:
        f.write(small)
    r = subprocess.run([KURIERD, "-c", k.conf, "-t"], capture_output=True, timeout=SAFETY)
    assert r.returncode == 1 and b"RSA key of 512 bits" in r.stderr, r.stderr
    os.unlink(bad)
    k.cli("dkim", "keygen", "example.test", "--type", "ed25519")
    r = subprocess.run([KURIERD, "-c", k.conf, "-t"], capture_output=True, timeout=SAFETY)
    assert r.returncode == 0, r.stderr
