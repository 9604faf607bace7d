#!/usr/bin/python3
"""DKIM verification and DMARC on inbound mail (docs/inbound.md "DKIM and DMARC
checks"): the real kurierd with `checks spf dkim dmarc`, its resolver pointed at the
loopback test DNS (spfdns.py) serving DKIM keys and DMARC records. Messages are signed
by Debian's python3-dkim (rsa-sha256 and ed25519-sha256); the delivered message's
Authentication-Results field, read with Python's email package, must say what
python3-dkim's own verifier says. DMARC none/quarantine/reject, subdomain policy,
aligned and unaligned signatures, the reject action (550 5.7.1), pct= sampling, a
failed policy lookup (temperror), the aggregate counts in the directory database, and
a hang-up during the key lookup (ASan build)."""

import base64
import email
import email.policy
import glob
import smtplib
import socket
import sqlite3
import time

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from conftest import SAFETY
import spfdns

HOST = "mx.example.test"


def rsa_key(bits=2048):
    k = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    priv = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                           serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)


def ed_key():
    k = ed25519.Ed25519PrivateKey.generate()
    seed = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                           serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(seed), b"v=DKIM1; k=ed25519; p=" + base64.b64encode(pub)


RSA_PRIV, RSA_TXT = rsa_key()
OTHER_PRIV, OTHER_TXT = rsa_key()
ED_PRIV, ED_TXT = ed_key()
SMALL_PRIV, SMALL_TXT = rsa_key(512)


def txt(record):
    """A TXT record as strings of at most 255 bytes (a 2048-bit key is longer)."""
    s = record.decode()
    return [s[i:i + 250] for i in range(0, len(s), 250)]


ZONE = {
    "sel._domainkey.signed.test": [{"TXT": txt(RSA_TXT)}],
    "ed._domainkey.signed.test": [{"TXT": txt(ED_TXT)}],
    # the selector "wrong" publishes another key than the one that signed
    "wrong._domainkey.signed.test": [{"TXT": txt(OTHER_TXT)}],
    "sel._domainkey.mail.signed.test": [{"TXT": txt(RSA_TXT)}],
    # the key rules (RFC 6376 3.6.1, RFC 8301 3.2): too small, testing, revoked, t=s
    "small._domainkey.signed.test": [{"TXT": txt(SMALL_TXT)}],
    "testing._domainkey.signed.test": [{"TXT": txt(RSA_TXT.replace(b"k=rsa;", b"k=rsa; t=y;"))}],
    "revoked._domainkey.signed.test": [{"TXT": "v=DKIM1; k=rsa; p="}],
    "strict._domainkey.signed.test": [{"TXT": txt(RSA_TXT.replace(b"k=rsa;", b"k=rsa; t=s;"))}],
    "sel._domainkey.other.test": [{"TXT": txt(RSA_TXT)}],
    "sel._domainkey.sub.strict.test": [{"TXT": txt(RSA_TXT)}],
    "_dmarc.signed.test": [{"TXT": "v=DMARC1; p=reject; rua=mailto:agg@signed.test"}],
    "_dmarc.quar.test": [{"TXT": "v=DMARC1; p=quarantine"}],
    "_dmarc.none.test": [{"TXT": "v=DMARC1; p=none"}],
    # two DMARC records: permerror, no action
    "_dmarc.two.test": [{"TXT": "v=DMARC1; p=reject"}, {"TXT": "v=DMARC1; p=none"}],
    # no record at sub.org.test: the organisational domain's sp= applies
    "_dmarc.org.test": [{"TXT": "v=DMARC1; p=none; sp=reject"}],
    "_dmarc.strict.test": [{"TXT": "v=DMARC1; p=reject; adkim=s"}],
    # SPF-aligned mail: the envelope sender's domain is the From: domain
    "spf.test": [{"TXT": "v=spf1 ip4:127.0.0.1 -all"}],
    "_dmarc.spf.test": [{"TXT": "v=DMARC1; p=reject"}],
    # the policy lookup fails (SERVFAIL, no answer at all): temperror, even though the
    # organisational domain org.test has sp=reject (no fallback on a failed lookup)
    "_dmarc.down.org.test": ["SERVFAIL"],
    "_dmarc.mute.org.test": ["TIMEOUT"],
    # pct= sampling (RFC 7489 6.6.4): the share left out gets the next lower policy
    "_dmarc.pct0.test": [{"TXT": "v=DMARC1; p=reject; pct=0"}],
    "_dmarc.pct100.test": [{"TXT": "v=DMARC1; p=reject; pct=100"}],
    "_dmarc.qpct0.test": [{"TXT": "v=DMARC1; p=quarantine; pct=0"}],
}


def dns_txt(name, timeout=5):
    """python3-dkim's key lookup, from the same zone the daemon asks."""
    key = name.decode().rstrip(".")
    for item in ZONE.get(key, []):
        if "TXT" in item:
            v = item["TXT"]
            return ("".join(v) if isinstance(v, list) else v).encode()
    return None


@pytest.fixture(scope="module")
def dns():
    with spfdns.serving(ZONE) as srv:
        yield srv


def start(kurier_factory, dns, listen=""):
    k = kurier_factory(listen_extra="    checks spf dkim dmarc;\n" + listen,
                       extra="resolver 127.0.0.1@%d;\n" % dns.port)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    return k


def message(from_addr, body=b"Hello,\r\n\r\nthe numbers are attached.\r\n", subject="report"):
    return (b"From: Alice <%s>\r\nTo: demo@example.test\r\nSubject: %s\r\n"
            b"Date: Sun, 06 Dec 2026 12:00:00 +0000\r\nMessage-ID: <%d@x.test>\r\n\r\n" %
            (from_addr.encode(), subject.encode(), time.time_ns())) + body


def sign(msg, domain, selector=b"sel", key=RSA_PRIV, alg=b"rsa-sha256",
         canon=(b"relaxed", b"relaxed"), **kw):
    sig = dkim.sign(msg, selector, domain.encode(), key, canonicalize=canon,
                    signature_algorithm=alg, include_headers=[b"from", b"to", b"subject",
                                                               b"date", b"message-id"], **kw)
    return sig + msg


def send(k, msg, sender="bounces@relay.test"):
    """(code, text) of the DATA reply (or of the first refusal)."""
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        s.ehlo("client.example")
        code, text = s.mail(sender)
        if code == 250:
            code, text = s.rcpt("demo@example.test")
        if code == 250:
            code, text = s.data(msg)
        return code, text.decode(errors="replace")


def results(k, n=1):
    """The Authentication-Results of the message delivered as the n-th (the one file
    not read before: names do not sort in arrival order within a second):
    [(method, result, props, text)] with props a dict of ptype.property -> value."""
    seen = k.__dict__.setdefault("seen", set())
    new = [p for p in k.wait_mail("demo@example.test", n) if p not in seen]
    assert len(new) == 1, new
    path = new[0]
    seen.add(path)
    with open(path, "rb") as f:
        raw = f.read()
    m = email.message_from_bytes(raw, policy=email.policy.default)
    # the field was written with room for the end-of-data results and filled in at the
    # commit (docs/inbound.md): what is left of the room must still be a valid field,
    # no line over 998 bytes nor only white space (RFC 5322 2.1.1, 3.2.2)
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.split(b"\n"):
        line = line.rstrip(b"\r")
        assert len(line) <= 998 and line.strip(b" \t"), line[:80]
    fields = m.get_all("Authentication-Results")
    assert fields and len(fields) == 1, fields  # one field, ours
    value = " ".join(str(fields[0]).split())
    parts = [p.strip() for p in value.split(";")]
    assert parts[0] == HOST
    out = []
    for p in parts[1:]:
        # drop comments
        depth, clean = 0, ""
        for ch in p:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif depth == 0:
                clean += ch
        words = clean.split()
        method, res = words[0].split("=", 1)
        # a value may be a quoted-string ("/" in header.b is not a token character)
        props = dict((w.split("=", 1)[0], w.split("=", 1)[1].strip('"'))
                     for w in words[1:] if "=" in w)
        out.append((method, res, props, p))
    return out


def only(res, method):
    return [r for r in res if r[0] == method]


def test_valid_rsa_and_ed25519_signatures_pass(kurier_factory, dns):
    k = start(kurier_factory, dns)
    msg = sign(message("alice@signed.test"), "signed.test")
    msg = sign(msg, "signed.test", selector=b"ed", key=ED_PRIV, alg=b"ed25519-sha256")
    assert dkim.verify(msg, dnsfunc=dns_txt)  # the independent verdict
    code, text = send(k, msg)
    assert code == 250, text
    res = results(k)
    d = only(res, "dkim")
    assert [(r[1], r[2]["header.d"], r[2]["header.s"]) for r in d] == [
        ("pass", "signed.test", "ed"), ("pass", "signed.test", "sel")], res
    assert all(len(r[2]["header.b"]) == 8 for r in d)
    assert "2048-bit rsa key" in d[1][3] and "ed25519" in d[0][3]
    dm = only(res, "dmarc")
    assert [(r[1], r[2]["header.from"]) for r in dm] == [("pass", "signed.test")], res
    assert only(res, "spf")[0][1] == "none"


def test_simple_canonicalization_and_folded_headers(kurier_factory, dns):
    k = start(kurier_factory, dns)
    m = message("alice@signed.test", subject="a long subject\r\n\tfolded  over  two lines",
                body=b"line  with   spaces \r\n\r\n\r\n")
    msg = sign(m, "signed.test", canon=(b"simple", b"simple"))
    assert dkim.verify(msg, dnsfunc=dns_txt)
    assert send(k, msg)[0] == 250
    assert only(results(k), "dkim")[0][1] == "pass"


def test_multi_megabyte_8bit_message(kurier_factory, dns):
    """A 3 MB body with UTF-8 text, hashed while it streams in many writes."""
    k = start(kurier_factory, dns)
    body = b"".join(("Zeile %d mit  Umlauten \u00e4\u00f6\u00fc \t \r\n" % i).encode()
                    for i in range(90000))
    msg = sign(message("alice@signed.test", body=body + b"\r\n\r\n"), "signed.test")
    assert len(msg) > 3_000_000
    assert dkim.verify(msg, dnsfunc=dns_txt)
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        s.ehlo("client.example")
        s.sendmail("b@relay.test", ["demo@example.test"], msg, mail_options=["BODY=8BITMIME"])
    res = results(k)
    assert only(res, "dkim")[0][1] == "pass" and only(res, "dmarc")[0][1] == "pass", res


def test_altered_body_fails_and_p_reject_refuses(kurier_factory, dns):
    k = start(kurier_factory, dns)
    msg = sign(message("alice@signed.test"), "signed.test")
    forged = msg.replace(b"numbers are attached", b"numbers are elsewhere")
    assert not dkim.verify(forged, dnsfunc=dns_txt)
    code, text = send(k, forged)
    assert code == 550 and text.startswith("5.7.1") and "DMARC" in text, text
    # the action "none" only records: delivered with the results
    k2 = start(kurier_factory, dns, listen="    dmarc_reject none;\n")
    assert send(k2, forged)[0] == 250
    res = results(k2)
    d = only(res, "dkim")[0]
    assert d[1] == "fail" and "body hash" in d[3], res
    dm = only(res, "dmarc")[0]
    assert dm[1] == "fail" and "dis=reject" in dm[3], res


def test_wrong_key_and_expired_signature_fail(kurier_factory, dns):
    k = start(kurier_factory, dns, listen="    dmarc_reject 0;\n")
    wrong = sign(message("alice@signed.test"), "signed.test", selector=b"wrong")
    assert not dkim.verify(wrong, dnsfunc=dns_txt)
    assert send(k, wrong)[0] == 250
    d = only(results(k, 1), "dkim")[0]
    assert d[1] == "fail" and d[2]["header.s"] == "wrong", d

    # python3-dkim has no x= option: add t= and x= to the fields it signs (expired two
    # days ago: python3-dkim allows 10 hours for clocks that are off)
    orig = dkim.DKIM.gen_header
    now = int(time.time())

    def gen(self, fields, *a, **kw):
        fields = [f for f in fields if f[0] != b"t"]
        fields = fields[:-1] + [(b"t", b"%d" % (now - 3 * 86400)), (b"x", b"%d" % (now - 2 * 86400))] + \
            fields[-1:]
        return orig(self, fields, *a, **kw)

    dkim.DKIM.gen_header = gen
    try:
        expired = sign(message("alice@signed.test"), "signed.test")
    finally:
        dkim.DKIM.gen_header = orig
    assert b"x=" in expired.split(b"\r\n\r\n")[0]
    assert not dkim.verify(expired, dnsfunc=dns_txt)
    assert send(k, expired)[0] == 250
    d = only(results(k, 2), "dkim")[0]
    assert d[1] == "fail" and "expired" in d[3], d


def test_length_tag_and_rsa_sha1(kurier_factory, dns):
    """l= covering the whole body passes; content appended after the signed length is
    dkim=policy (python3-dkim would still say valid: it allows l=); rsa-sha1 is a
    permerror (RFC 8301) although python3-dkim verifies it."""
    k = start(kurier_factory, dns, listen="    dmarc_reject 0;\n")
    msg = sign(message("alice@signed.test"), "signed.test", length=True)
    assert send(k, msg)[0] == 250
    assert only(results(k, 1), "dkim")[0][1] == "pass"
    longer = msg + b"P.S. click here\r\n"
    assert dkim.verify(longer, dnsfunc=dns_txt)
    assert send(k, longer)[0] == 250
    d = only(results(k, 2), "dkim")[0]
    assert d[1] == "policy" and "unsigned" in d[3], d
    sha1 = sign(message("alice@signed.test"), "signed.test", alg=b"rsa-sha1")
    assert send(k, sha1)[0] == 250
    d = only(results(k, 3), "dkim")[0]
    assert d[1] == "permerror" and "RFC 8301" in d[3], d


def with_times(t, x=None):
    """python3-dkim has no t=/x= option: sign with these values (a context manager)."""
    import contextlib

    @contextlib.contextmanager
    def cm():
        orig = dkim.DKIM.gen_header

        def gen(self, fields, *a, **kw):
            fields = [f for f in fields if f[0] not in (b"t", b"x")]
            extra = [(b"t", b"%d" % t)] + ([(b"x", b"%d" % x)] if x is not None else [])
            return orig(self, fields[:-1] + extra + fields[-1:], *a, **kw)

        dkim.DKIM.gen_header = gen
        try:
            yield
        finally:
            dkim.DKIM.gen_header = orig
    return cm()


def test_key_rules(kurier_factory, dns):
    """A 512-bit RSA key (RFC 8301: at least 1024), a revoked key (empty p=), a key
    with t=s and an i= in a subdomain, and a signature from the future are
    permerrors; a key with t=y passes with a note. python3-dkim agrees on the small
    key; two DMARC records are a DMARC permerror that refuses nothing."""
    k = start(kurier_factory, dns, listen="    dmarc_reject 0;\n")
    cases = [
        (sign(message("a@signed.test"), "signed.test", selector=b"small", key=SMALL_PRIV),
         "permerror", "512-bit key is too small"),
        (sign(message("a@signed.test"), "signed.test", selector=b"revoked"), "permerror",
         "key revoked"),
        (sign(message("a@signed.test"), "signed.test", selector=b"strict",
              identity=b"a@mail.signed.test"), "permerror", "t=s"),
        (sign(message("a@signed.test"), "signed.test", selector=b"testing"), "pass",
         "testing mode"),
    ]
    assert not dkim.verify(cases[0][0], dnsfunc=dns_txt)  # the independent verdict
    assert dkim.verify(cases[3][0], dnsfunc=dns_txt)
    with with_times(int(time.time()) + 86400):
        cases.append((sign(message("a@signed.test"), "signed.test"), "permerror", "future"))
    for n, (msg, want, why) in enumerate(cases, 1):
        assert send(k, msg)[0] == 250
        d = only(results(k, n), "dkim")
        assert len(d) == 1 and d[0][1] == want and why in d[0][3], (want, why, d)
    assert send(k, sign(message("a@two.test"), "signed.test"))[0] == 250
    dm = only(results(k, len(cases) + 1), "dmarc")
    assert [r[1] for r in dm] == ["permerror"], dm


def test_dmarc_policies_and_alignment(kurier_factory, dns):
    """none, quarantine (a score: delivered), subdomain policy sp=reject, relaxed
    alignment of a subdomain signature, strict alignment failing, SPF alignment."""
    k = start(kurier_factory, dns)
    cases = [
        # (From:, signing domain or None, envelope sender, dkim, dmarc, in the comment)
        ("a@none.test", "other.test", "b@relay.test", "pass", "fail", "dis=none"),
        ("a@quar.test", None, "b@relay.test", None, "fail", "dis=quarantine"),
        ("a@signed.test", "mail.signed.test", "b@relay.test", "pass", "pass", "p=reject"),
        ("a@spf.test", None, "b@spf.test", None, "pass", "p=reject"),
    ]
    n = 0
    for frm, dom, sender, dres, mres, comment in cases:
        msg = message(frm)
        if dom:
            msg = sign(msg, dom)
        code, text = send(k, msg, sender=sender)
        assert code == 250, (frm, text)
        n += 1
        res = results(k, n)
        if dres:
            assert only(res, "dkim")[0][1] == dres, res
        else:
            assert only(res, "dkim")[0][1] == "none", res
        dm = only(res, "dmarc")[0]
        assert (dm[1], dm[2]["header.from"]) == (mres, frm.split("@")[1]), (frm, res)
        assert comment in dm[3], (frm, res)
    # sp=reject of org.test for sub.org.test; adkim=s of strict.test
    code, text = send(k, sign(message("a@sub.org.test"), "other.test"))
    assert code == 550 and text.startswith("5.7.1"), text
    code, text = send(k, sign(message("a@strict.test"), "sub.strict.test"))
    assert code == 550 and text.startswith("5.7.1"), text
    # aggregate data: one row per (day, source, From: domain, ...) with counts
    db = glob.glob(k.dir + "/var/*.db")[0]
    deadline = time.time() + SAFETY
    while True:
        with sqlite3.connect(db) as c:
            rows = c.execute("SELECT source_ip, header_from, policy_domain, disposition, dkim, "
                             "spf, count FROM dmarc_counts ORDER BY header_from").fetchall()
        if len(rows) >= 6 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert ("127.0.0.1", "sub.org.test", "org.test", "reject", "fail", "fail", 1) in rows, rows
    assert ("127.0.0.1", "quar.test", "quar.test", "quarantine", "fail", "fail", 1) in rows, rows
    assert ("127.0.0.1", "spf.test", "spf.test", "none", "fail", "pass", 1) in rows, rows


def test_policy_lookup_failure_is_temperror(kurier_factory, dns):
    """RFC 7489 6.6.2/6.6.3: a DMARC record lookup that fails temporarily (SERVFAIL)
    is dmarc=temperror; the message is delivered (no policy acts), no organisational
    domain's record is asked instead (org.test's sp=reject would refuse it) and no
    aggregate count is made. The unaligned signature and the envelope sender fail
    DMARC, so any policy that applied would refuse."""
    k = start(kurier_factory, dns)
    code, text = send(k, sign(message("a@down.org.test"), "other.test"))
    assert code == 250, text
    res = results(k)
    assert only(res, "dkim")[0][1] == "pass", res
    dm = only(res, "dmarc")
    assert [(r[1], r[2]["header.from"]) for r in dm] == [("temperror", "down.org.test")], res
    assert "dmarc:temperror" in k.log()
    # the control: the same message from a subdomain without a record gets the
    # organisational domain's sp=reject
    code, text = send(k, sign(message("a@up.org.test"), "other.test"))
    assert code == 550 and text.startswith("5.7.1"), text
    db = glob.glob(k.dir + "/var/*.db")[0]
    deadline = time.time() + SAFETY
    while True:
        with sqlite3.connect(db) as c:
            rows = c.execute("SELECT header_from FROM dmarc_counts").fetchall()
        if rows or time.time() > deadline:
            break
        time.sleep(0.1)
    assert rows == [("up.org.test",)], rows


def test_policy_lookup_timeout_is_temperror(kurier_factory, dns):
    """The test DNS never answers the policy query: when the resolver gives up
    (libunbound's retries, or kurier's 30 s limit) the result is dmarc=temperror and
    the message is delivered (the SMTP client waits up to SAFETY)."""
    k = start(kurier_factory, dns)
    code, text = send(k, sign(message("a@mute.org.test"), "other.test"))
    assert code == 250, text
    dm = only(results(k), "dmarc")
    assert [(r[1], r[2]["header.from"]) for r in dm] == [("temperror", "mute.org.test")], dm


def test_pct_sampling(kurier_factory, dns):
    """pct= end to end (RFC 7489 6.6.4): failing mail under p=reject; pct=0 never gets
    reject but the next lower policy, quarantine (the listener's quarantine action: a
    score, delivered); pct=100 always gets reject (550 5.7.1). Several messages each,
    judged by count."""
    k = start(kurier_factory, dns)
    n = 0
    for i in range(4):
        code, text = send(k, sign(message("a@pct0.test"), "other.test"))
        assert code == 250, (i, text)
        n += 1
        dm = only(results(k, n), "dmarc")[0]
        assert dm[1] == "fail" and "p=reject" in dm[3] and "dis=quarantine" in dm[3], dm
        code, text = send(k, sign(message("a@pct100.test"), "other.test"))
        assert code == 550 and text.startswith("5.7.1") and "DMARC" in text, (i, text)
    assert k.log().count("dmarc:fail/score5") == 4
    # where quarantine refuses, pct=0 under p=quarantine lowers to none (delivered)
    # while p=reject; pct=0 is refused as quarantine
    k2 = start(kurier_factory, dns, listen="    dmarc_quarantine reject;\n")
    for i in range(3):
        code, text = send(k2, sign(message("a@qpct0.test"), "other.test"))
        assert code == 250, (i, text)
        dm = only(results(k2, i + 1), "dmarc")[0]
        assert dm[1] == "fail" and "p=quarantine" in dm[3] and "dis=none" in dm[3], dm
        code, text = send(k2, sign(message("a@pct0.test"), "other.test"))
        assert code == 550 and "p=quarantine" in text, (i, text)


def test_many_signatures_fill_the_room(kurier_factory, dns):
    """The Authentication-Results field is written when the header section ends, with
    room for the DKIM and DMARC results, and filled in at the commit without copying
    the message: eight signatures (the most that are checked) with long selectors and
    a ninth that is not checked, each with its result in the one field; the body that
    follows it arrives unchanged."""
    k = start(kurier_factory, dns, listen="    dmarc_reject 0;\n")
    body = b"".join(b"line %d of the body\r\n" % i for i in range(2000))
    msg = message("alice@signed.test", body=body)
    # signed in this order, so the last ones are on top, the first one is the ninth
    sels = [b"unchecked"] + [b"missing%d-%s" % (i, b"x" * 50) for i in range(5)] + \
        [b"wrong", b"ed", b"sel"]
    for sel in sels:
        key, alg = (ED_PRIV, b"ed25519-sha256") if sel == b"ed" else (RSA_PRIV, b"rsa-sha256")
        msg = sign(msg, "signed.test", selector=sel, key=key, alg=alg)
    assert send(k, msg)[0] == 250
    res = results(k)
    d = only(res, "dkim")
    assert len(d) == 8, res
    by_sel = {r[2]["header.s"]: r[1] for r in d}
    assert "unchecked" not in by_sel, d
    assert by_sel["sel"] == "pass" and by_sel["ed"] == "pass" and by_sel["wrong"] == "fail", d
    assert sorted(v for s_, v in by_sel.items() if s_.startswith("missing")) == ["permerror"] * 5
    assert [r[1] for r in only(res, "dmarc")] == ["pass"] and only(res, "spf"), res
    path = sorted(k.seen)[0]
    with open(path, "rb") as f:
        assert f.read().endswith(body.replace(b"\r\n", b"\n"))  # Maildir: LF


def test_authenticated_submission_is_not_checked(kurier_factory, dns):
    k = kurier_factory(listen_extra="    checks spf dkim dmarc;\n    auth on;\n"
                       "    auth_plaintext on;\n    require_auth off;\n",
                       extra="resolver 127.0.0.1@%d;\n" % dns.port)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    forged = sign(message("demo@example.test"), "signed.test").replace(b"attached", b"gone")
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        s.ehlo("client.example")
        s.login("demo@example.test", "demo")
        s.sendmail("demo@example.test", ["demo@example.test"], forged)
    path = k.wait_mail("demo@example.test", 1)[0]
    with open(path, "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    assert m.get_all("Authentication-Results") is None


@pytest.mark.parametrize("check", ["dkim", "dmarc"])
def test_hang_up_during_the_key_lookup(kurier_factory, dns_hole, check):
    """The resolver never answers: the session waits on the key's query (dkim) or the
    policy's (dmarc) at the end of the message; the client hangs up; session, check
    and query are freed (ASan)."""
    k = kurier_factory(listen_extra="    checks %s;\n" % check,
                       extra="resolver 127.0.0.1@%d;\n" % dns_hole.port)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    for n in range(2):
        msg = sign(message("alice@slow%d.test" % n), "slow%d.test" % n)
        c = socket.create_connection(("127.0.0.1", k.port), timeout=SAFETY)
        c.sendall(b"EHLO client.example\r\nMAIL FROM:<a@relay.test>\r\n"
                  b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        got = b""
        while got.count(b"\r\n354 ") == 0 and not got.startswith(b"354"):
            got += c.recv(4096)
            if b"354 " in got:
                break
        c.sendall(msg + b".\r\n")
        dns_hole.wait_query(b"\x05slow%d\x04test" % n)
        c.close()
    log = k.wait_log_count("lost connection after DATA", 2)
    assert check + ":" not in log  # no verdict ever came
    assert k.maildir_new("demo@example.test") == []
    k.stop_clean()


def test_config_values_and_errors(kurier_factory, tmp_path):
    k = kurier_factory(listen_extra="    checks spf dkim dmarc;\n    dmarc_reject none;\n"
                                    "    dmarc_quarantine reject;\n")
    out = k.cli("config", "dump").stdout.decode()
    for kv in ("checks spf dkim dmarc;", "dmarc_reject 0;", "dmarc_quarantine reject;"):
        assert kv in out, out
    bad = tmp_path / "bad.conf"
    bad.write_text("listen 127.0.0.1:2525 {\n    checks dkim dmarcc;\n"
                   "    dmarc_quarantine maybe;\n}\n")
    err = k.config_check_fails(bad)
    assert '"dmarcc"' in err, err
    assert 'invalid value "maybe" for "dmarc_quarantine"' in err, err
