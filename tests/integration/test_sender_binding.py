#!/usr/bin/python3
"""Senders bound to their login: an authenticated user may use as envelope sender and
in the From:/Sender:/Resent-From:/Resent-Sender: headers only addresses they own (their mailbox, its aliases,
granted addresses and domains). Per domain: enforce (553 5.7.1), log, off.
Unauthenticated MX sessions are not affected. AUTH PLAIN on a plaintext MX listener
(auth_plaintext, tests only)."""

import base64

import pytest

from conftest import Raw

AUTH_LISTENER = "    auth on;\n    auth_plaintext on;\n"
USER = "u@example.test"
PASS = "upass"


def out(r):
    return r.stdout.decode(errors="replace")


def err(r):
    return r.stderr.decode(errors="replace")


def refusal(addr, user=USER):
    return "Sender address <%s> not owned by user %s" % (addr, user)


@pytest.fixture
def k(kurier_factory):
    """kurierd with AUTH on its MX listener; example.test holds u, v and demo, alias
    info@ -> u; other.test exists with its own mailbox."""
    k = kurier_factory(listen_extra=AUTH_LISTENER)
    k.add_domain("example.test")
    k.add_domain("other.test")
    k.add_mailbox(USER, PASS)
    k.add_mailbox("v@example.test", "vpass")
    k.add_mailbox("demo@example.test", "demo")
    k.add_mailbox("w@other.test", "wpass")
    k.cli("alias", "add", "info@example.test", USER)
    k.start()
    return k


class Session:
    def __init__(self, k, user=USER, password=PASS):
        self.c = Raw(k.port)
        code, text = self.c.reply()
        assert code == 220, text
        code, text = self.c.cmd("EHLO client.example")
        assert code == 250, text
        if user is not None:
            token = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
            code, text = self.c.cmd("AUTH PLAIN " + token)
            assert code == 235, "AUTH failed: %s" % text

    def mail(self, sender):
        return self.c.cmd("MAIL FROM:<%s>" % sender)

    def message(self, sender, headers, rcpt="demo@example.test", body="hello\r\n"):
        """A whole transaction; returns the reply to the end of DATA (or the first
        refusal before it)."""
        code, text = self.mail(sender)
        if code != 250:
            return code, text
        code, text = self.c.cmd("RCPT TO:<%s>" % rcpt)
        assert code == 250, text
        code, text = self.c.cmd("DATA")
        assert code == 354, text
        self.c.send(headers + "\r\n" + body + ".\r\n")
        return self.c.reply()

    def close(self):
        try:
            self.c.send("QUIT\r\n")
        except OSError:
            pass
        self.c.close()


@pytest.fixture
def session(k):
    made = []

    def open_(user=USER, password=PASS):
        s = Session(k, user, password)
        made.append(s)
        return s

    yield open_
    for s in made:
        s.close()


def headers(frm, sender=None, subject="binding"):
    h = "From: %s\r\nTo: demo@example.test\r\nSubject: %s\r\n" % (frm, subject)
    if sender:
        h += "Sender: %s\r\n" % sender
    return h


# --- envelope sender (MAIL) ---------------------------------------------------------

def test_own_address_is_accepted_and_delivered(k, session):
    s = session()
    code, text = s.message(USER, headers("U <u@example.test>", subject="own"))
    assert code == 250, text
    files = k.wait_mail("demo@example.test")
    with open(files[0], "rb") as f:
        assert b"Subject: own" in f.read()


def test_own_address_in_other_case_is_accepted(k, session):
    s = session(user="U@Example.TEST")
    code, text = s.mail("u@EXAMPLE.test")
    assert code == 250, text


def test_someone_elses_address_is_refused(k, session):
    s = session()
    code, text = s.mail("v@example.test")
    assert code == 553, text
    assert "5.7.1" in text and refusal("v@example.test") in text, text
    # the session goes on: the user may try again with their own address
    code, text = s.mail(USER)
    assert code == 250, text
    k.wait_log("553 5.7.1")


def test_refused_mail_in_a_pipelined_burst(k, session):
    s = session()
    s.c.send("MAIL FROM:<v@example.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n")
    code, text = s.c.reply()
    assert code == 553 and refusal("v@example.test") in text, text
    code, text = s.c.reply()
    assert code == 503, text  # RCPT without a sender
    code, text = s.c.reply()
    assert code in (503, 554), text  # DATA without recipients
    code, text = s.c.cmd("RSET")
    assert code == 250, text


def test_null_sender_is_allowed(k, session):
    s = session()
    code, text = s.mail("")
    assert code == 250, text


def test_alias_of_the_user_is_accepted(k, session):
    s = session()
    code, text = s.message("info@example.test", headers("Info <info@example.test>"))
    assert code == 250, text
    # but v is not a target of info@
    s2 = session(user="v@example.test", password="vpass")
    code, text = s2.mail("info@example.test")
    assert code == 553 and refusal("info@example.test", "v@example.test") in text, text


def test_granted_address(k, session):
    code, text = session().mail("boss@partner.example")
    assert code == 553 and refusal("boss@partner.example") in text, text
    k.cli("mailbox", "grant", USER, "Boss@Partner.example")
    s = session()
    code, text = s.message("boss@partner.example", headers("Boss <boss@partner.example>"))
    assert code == 250, text
    code, text = session().mail("other@partner.example")
    assert code == 553, text
    k.cli("mailbox", "revoke", USER, "boss@partner.example")
    code, text = session().mail("boss@partner.example")
    assert code == 553 and refusal("boss@partner.example") in text, text


def test_granted_domain(k, session):
    k.cli("mailbox", "grant", USER, "@other.test")
    s = session()
    code, text = s.message("w@other.test", headers("w@other.test", sender="anyone@other.test"))
    assert code == 250, text
    code, text = session().mail("x@sub.other.test")
    assert code == 553, text  # a domain grant does not cover subdomains
    # the grant is u's alone
    code, text = session(user="v@example.test", password="vpass").mail("w@other.test")
    assert code == 553 and refusal("w@other.test", "v@example.test") in text, text


def test_mode_log_accepts_and_logs(k, session):
    k.cli("domain", "binding", "example.test", "log")
    s = session()
    code, text = s.message("v@example.test", headers("v@example.test"))
    assert code == 250, text
    k.wait_log("sender <v@example.test> not owned by user u@example.test (binding mode log)")
    k.wait_mail("demo@example.test")


def test_mode_off_accepts_silently(k, session):
    k.cli("domain", "binding", "example.test", "off")
    s = session()
    code, text = s.message("v@example.test", headers("v@example.test"))
    assert code == 250, text
    k.wait_mail("demo@example.test")
    assert "not owned" not in k.log()


def test_mode_of_the_users_domain_decides(k, session):
    # other.test is lax, but u belongs to example.test (enforce)
    k.cli("domain", "binding", "other.test", "off")
    code, text = session().mail("w@other.test")
    assert code == 553 and refusal("w@other.test") in text, text
    k.cli("domain", "binding", "example.test", "off")
    code, text = session().mail("w@other.test")
    assert code == 250, text


# --- headers at the end of DATA -------------------------------------------------------

def test_header_from_of_another_address_is_refused(k, session):
    s = session()
    code, text = s.message(USER, headers("V <v@example.test>"))
    assert code == 553, text
    assert "5.7.1" in text and refusal("v@example.test") in text, text
    # nothing was queued; the session is usable again
    code, text = s.message(USER, headers("u@example.test", subject="second"))
    assert code == 250, text
    files = k.wait_mail("demo@example.test")
    assert len(files) == 1
    with open(files[0], "rb") as f:
        assert b"Subject: second" in f.read()


def test_header_from_with_several_addresses_and_folding(k, session):
    s = session()
    code, text = s.message(USER, headers("u@example.test,\r\n \"Info\" <info@example.test>"))
    assert code == 250, text
    code, text = s.message(USER, headers("u@example.test,\r\n \"V\" <v@example.test>"))
    assert code == 553 and refusal("v@example.test") in text, text


def test_sender_header_is_checked(k, session):
    s = session()
    code, text = s.message(USER, headers("u@example.test", sender="v@example.test"))
    assert code == 553 and refusal("v@example.test") in text, text
    code, text = s.message(USER, headers("u@example.test", sender="info@example.test"))
    assert code == 250, text


def test_header_in_log_mode(k, session):
    k.cli("domain", "binding", "example.test", "log")
    s = session()
    code, text = s.message(USER, headers("v@example.test", subject="logged"))
    assert code == 250, text
    k.wait_log("sender <v@example.test> not owned by user u@example.test (binding mode log)")


def test_from_in_the_body_is_not_a_header(k, session):
    s = session()
    code, text = s.message(USER, headers("u@example.test"), body="From: v@example.test\r\n")
    assert code == 250, text


# --- issue 9 item 3: no way around the From: check ------------------------------------

def padding(n=1000):
    """n header fields, together longer than the 64 KiB of headers a session keeps."""
    return "".join("X-Padding-%04d: %s\r\n" % (i, "p" * 60) for i in range(n))


def test_from_after_64k_of_padding_is_refused(k, session):
    # 1,000 padding fields first, then the forged From: past what the session keeps
    s = session()
    h = padding() + "From: ceo@victim.example\r\nSubject: padded\r\n"
    assert len(h) > 64 * 1024
    code, text = s.message(USER, h)
    assert code == 552, text
    assert "5.3.4" in text and "header section too long" in text, text
    k.wait_log("552 5.3.4")
    # even the user's own From: cannot be seen there: refused all the same, and nothing
    # was queued
    code, text = s.message(USER, padding() + "From: u@example.test\r\n")
    assert code == 552 and "5.3.4" in text, text
    code, text = s.message(USER, headers("u@example.test", subject="short"))
    assert code == 250, text
    files = k.wait_mail("demo@example.test")
    assert len(files) == 1


def test_from_after_64k_of_padding_in_bdat_chunks_is_refused(k, session):
    s = session()
    msg = (padding() + "From: ceo@victim.example\r\n\r\nbody\r\n").encode()
    assert s.mail(USER)[0] == 250
    assert s.c.cmd("RCPT TO:<demo@example.test>")[0] == 250
    half = len(msg) // 2
    s.c.send(b"BDAT %d\r\n" % half + msg[:half])
    code, text = s.c.reply()
    assert code == 250, text
    s.c.send(b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:])
    code, text = s.c.reply()
    assert code == 552 and "5.3.4" in text, text


def test_long_headers_within_the_limit_are_checked(k, session):
    # 800 padding fields (under 64 KiB): everything is seen, own From: passes, a forged
    # one is refused as usual
    s = session()
    code, text = s.message(USER, padding(800) + "From: u@example.test\r\n")
    assert code == 250, text
    code, text = s.message(USER, padding(800) + "From: ceo@victim.example\r\n")
    assert code == 553 and refusal("ceo@victim.example") in text, text


def test_long_headers_from_unauthenticated_clients_pass(k, session):
    # nothing checks the headers of MX traffic: a long header section is accepted
    s = session(user=None)
    code, text = s.message("stranger@remote.example",
                           padding() + "From: stranger@remote.example\r\n")
    assert code == 250, text
    k.wait_mail("demo@example.test")


@pytest.mark.parametrize("frm", [
    '"ceo@victim.example" :;',
    '"ceo@victim.example":;',
    "victim: ceo@victim.example;",
    "undisclosed-recipients:;",
    "",
])
def test_group_or_empty_from_is_refused(k, session, frm):
    s = session()
    code, text = s.message(USER, "From: %s\r\nSubject: group\r\n" % frm)
    assert code == 553, text
    assert "5.7.1" in text and "Malformed From: header" in text, text


def test_group_sender_is_refused(k, session):
    s = session()
    code, text = s.message(USER, headers("u@example.test", sender='"ceo@victim.example" :;'))
    assert code == 553 and "Malformed Sender: header" in text, text


@pytest.mark.parametrize("field", ["Resent-From", "Resent-Sender"])
def test_resent_fields_are_checked(k, session, field):
    s = session()
    code, text = s.message(USER, headers("u@example.test") + "%s: v@example.test\r\n" % field)
    assert code == 553 and refusal("v@example.test") in text, text
    code, text = s.message(USER, headers("u@example.test") + "%s: info@example.test\r\n" % field)
    assert code == 250, text


def test_every_from_field_is_checked(k, session):
    s = session()
    code, text = s.message(USER, headers("u@example.test") + "From: v@example.test\r\n")
    assert code == 553 and refusal("v@example.test") in text, text


# --- unauthenticated MX traffic --------------------------------------------------------

def test_unauthenticated_session_is_not_affected(k, session):
    s = session(user=None)
    code, text = s.message("v@example.test", headers("V <v@example.test>", sender="x@y.example"))
    assert code == 250, text
    code, text = s.message("stranger@remote.example", headers("stranger@remote.example"))
    assert code == 250, text
    k.wait_mail("demo@example.test", count=2)


# --- the CLI ------------------------------------------------------------------------

def test_cli_grants(k):
    k.cli("mailbox", "grant", USER, "boss@partner.example")
    k.cli("mailbox", "grant", "U@EXAMPLE.TEST", "@Partner.Example")
    k.cli("mailbox", "grant", "v@example.test", "shared@example.test")
    lines = [l.split() for l in out(k.cli("mailbox", "grants")).splitlines()]
    assert lines == [[USER, "@partner.example"], [USER, "boss@partner.example"],
                     ["v@example.test", "shared@example.test"]]
    lines = [l.split() for l in out(k.cli("mailbox", "grants", "v@example.test")).splitlines()]
    assert lines == [["v@example.test", "shared@example.test"]]

    r = k.cli("mailbox", "grant", USER, "boss@partner.example", check=False)
    assert r.returncode == 1 and "exists" in err(r), err(r)
    r = k.cli("mailbox", "grant", "ghost@example.test", "x@example.test", check=False)
    assert r.returncode == 1 and "no such mailbox ghost@example.test" in err(r), err(r)
    r = k.cli("mailbox", "grant", USER, "@bad..domain", check=False)
    assert r.returncode == 1 and "invalid domain" in err(r), err(r)
    r = k.cli("mailbox", "revoke", USER, "nobody@partner.example", check=False)
    assert r.returncode == 1 and "no such grant" in err(r), err(r)
    r = k.cli("mailbox", "grants", "ghost@example.test", check=False)
    assert r.returncode == 1 and "no such mailbox" in err(r), err(r)
    r = k.cli("mailbox", "grant", USER, check=False)
    assert r.returncode == 2 and "usage" in err(r), err(r)

    k.cli("mailbox", "revoke", USER, "@partner.example")
    k.cli("mailbox", "del", "v@example.test")  # its grants go with it
    lines = [l.split() for l in out(k.cli("mailbox", "grants")).splitlines()]
    assert lines == [[USER, "boss@partner.example"]]


def test_cli_domain_binding(k):
    lines = [l.split() for l in out(k.cli("domain", "list")).splitlines()]
    assert lines == [["example.test", "-", "enforce"], ["other.test", "-", "enforce"]]
    k.cli("domain", "binding", "Other.Test", "log")
    k.cli("domain", "catchall", "example.test", "demo")
    k.cli("domain", "binding", "example.test", "off")
    lines = [l.split() for l in out(k.cli("domain", "list")).splitlines()]
    assert lines == [["example.test", "demo", "off"], ["other.test", "-", "log"]]

    r = k.cli("domain", "binding", "example.test", "strict", check=False)
    assert r.returncode == 1 and 'invalid sender binding mode "strict"' in err(r), err(r)
    r = k.cli("domain", "binding", "nowhere.test", "log", check=False)
    assert r.returncode == 1 and "no such domain nowhere.test" in err(r), err(r)
    r = k.cli("domain", "binding", "example.test", check=False)
    assert r.returncode == 2 and "usage" in err(r), err(r)
