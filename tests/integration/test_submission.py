#!/usr/bin/python3
"""Submission: STARTTLS (RFC 3207) and implicit TLS (RFC 8314) by the book, SMTP AUTH
(RFC 4954), brute-force limits, SNI. Real TLS handshakes with real clients."""

import base64
import grp
import os
import pwd
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import time

import pytest

from conftest import KURIER, Kurier, Raw, free_port


def selfsigned(dirpath, host):
    cert = os.path.join(dirpath, host + ".crt")
    key = os.path.join(dirpath, host + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=" + host, "-addext",
                    "subjectAltName=DNS:" + host], check=True, capture_output=True)
    os.chmod(key, 0o644)
    return cert, key


@pytest.fixture
def sub(kurier_factory):
    """kurierd with an MX listener, a STARTTLS submission listener and an implicit
    TLS one; mailbox demo@example.test / demo."""
    k = kurier_factory()
    cert, key = selfsigned(k.dir, "mx.example.test")
    k.sub_port = free_port()
    k.tls_port = free_port()
    k.cert = cert
    with open(k.conf, "a") as f:
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    tls starttls;\n"
                "    cert %s;\n    key %s;\n}\n" % (k.sub_port, cert, key))
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    tls implicit;\n"
                "    cert %s;\n    key %s;\n}\n" % (k.tls_port, cert, key))
        f.write("auth {\n    max_failures 3;\n    delay_max 1s;\n    block_time 1h;\n}\n")
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.add_mailbox("other@example.test", "other")
    k.start()
    return k


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def b64(s):
    return base64.b64encode(s.encode()).decode()


def test_thunderbird_autodetect_starttls(sub):
    """Thunderbird's guesser talks first: EHLO and STARTTLS in one burst before the
    greeting; it needs the banner, STARTTLS in the EHLO reply and 220 to STARTTLS,
    then a clean handshake and AUTH offered inside TLS."""
    s = socket.create_connection(("127.0.0.1", sub.sub_port), timeout=10)
    s.sendall(b"EHLO we-guess.mozilla.org\r\nSTARTTLS\r\n")
    data = b""
    while b"\r\n220 2.0.0" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    lines = data.decode().split("\r\n")
    assert lines[0].startswith("220 mx.example.test ESMTP")
    assert "250-STARTTLS" in lines
    assert lines[-2].startswith("220 2.0.0")
    assert data.endswith(b"\r\n")  # nothing after the 220: the handshake comes next
    t = ctx().wrap_socket(s, server_hostname="mx.example.test")
    t.sendall(b"EHLO we-guess.mozilla.org\r\n")
    resp = b""
    while not resp.endswith(b"\r\n") or b"250 " not in resp:
        resp += t.recv(65536)
    assert b"AUTH PLAIN LOGIN" in resp
    assert b"STARTTLS" not in resp  # not offered twice
    t.sendall(b"QUIT\r\n")
    assert t.recv(100).startswith(b"221")
    t.close()


def test_thunderbird_autodetect_implicit(sub):
    s = ctx().wrap_socket(socket.create_connection(("127.0.0.1", sub.tls_port), timeout=10),
                          server_hostname="mx.example.test")
    s.sendall(b"EHLO we-guess.mozilla.org\r\n")
    data = b""
    while b"\r\n250 " not in data:
        data += s.recv(65536)
    assert data.startswith(b"220 mx.example.test")
    assert b"AUTH PLAIN LOGIN" in data
    s.close()


def test_starttls_injection_is_discarded(sub):
    """CVE-2011-0411: plaintext pipelined after STARTTLS is never executed in TLS."""
    r = Raw(sub.sub_port)
    r.reply()
    r.cmd("EHLO client.example")
    r.send(b"STARTTLS\r\nRSET\r\n")
    code, text = r.reply()
    assert code == 220
    t = ctx().wrap_socket(r.s, server_hostname="mx.example.test")
    t.settimeout(1.0)
    try:
        early = t.recv(1000)
    except socket.timeout:
        early = b""
    assert early == b"", early  # the RSET got no answer inside TLS
    t.sendall(b"NOOP\r\n")
    t.settimeout(10)
    assert t.recv(1000).startswith(b"250")
    t.close()
    assert "discarded 6 bytes of plaintext pipelined after STARTTLS" in sub.log()


def test_starttls_rules(sub):
    r = Raw(sub.sub_port)
    r.reply()
    code, text = r.cmd("EHLO client.example")
    assert "AUTH" not in text  # no AUTH before TLS
    assert r.cmd("STARTTLS now")[0] == 501
    code, _ = r.cmd("AUTH PLAIN " + b64("\0demo@example.test\0demo"))
    assert code == 538
    code, text = r.cmd("MAIL FROM:<demo@example.test>")
    assert code == 530 and "5.7.0" in text
    r.close()


def test_swaks_starttls_and_implicit(sub):
    for args in (["--server", "127.0.0.1:%d" % sub.sub_port, "--tls"],
                 ["--server", "127.0.0.1:%d" % sub.tls_port, "--tlsc"]):
        p = subprocess.run(["swaks", *args, "--auth", "PLAIN", "--auth-user",
                            "demo@example.test", "--auth-password", "demo", "--from",
                            "demo@example.test", "--to", "demo@example.test"],
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stdout.decode()
    files = sub.wait_mail("demo@example.test", 2)
    body = open(files[0], "rb").read()
    assert b"with ESMTPSA" in body
    assert b"TLSv1." in body


def test_openssl_s_client(sub):
    p = subprocess.run(["openssl", "s_client", "-quiet", "-starttls", "smtp", "-connect",
                        "127.0.0.1:%d" % sub.sub_port, "-crlf"],
                       input=b"EHLO client.example\nQUIT\n", capture_output=True,
                       timeout=30)
    out = p.stdout.decode()
    assert "250-AUTH PLAIN LOGIN" in out and "221 2.0.0" in out, out


def test_curl_ssl_reqd(sub, tmp_path):
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"Subject: curl\r\n\r\nbody\r\n")
    p = subprocess.run(["curl", "-sS", "smtp://127.0.0.1:%d" % sub.sub_port, "--ssl-reqd", "-k",
                        "--user", "demo@example.test:demo", "--mail-from",
                        "demo@example.test", "--mail-rcpt", "other@example.test",
                        "--upload-file", str(msg)], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    sub.wait_mail("other@example.test")


def test_smtplib_starttls_and_ssl(sub):
    with smtplib.SMTP("127.0.0.1", sub.sub_port, timeout=10) as s:
        s.starttls(context=ctx())
        s.login("demo@example.test", "demo")
        s.sendmail("demo@example.test", ["someone@remote.test"],
                   b"Subject: relay\r\n\r\nauthenticated users may relay\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", sub.tls_port, timeout=10, context=ctx()) as s:
        s.login("demo@example.test", "demo")
        s.sendmail("demo@example.test", ["other@example.test"], b"Subject: ssl\r\n\r\nx\r\n")
    sub.wait_mail("other@example.test")
    # the relayed one waits in the queue (remote delivery is a later capability)
    sub.wait_log("to=<someone@remote.test>")


def tls_session(port):
    r = Raw(port)
    r.reply()
    r.cmd("EHLO client.example")
    assert r.cmd("STARTTLS")[0] == 220
    r.s = ctx().wrap_socket(r.s, server_hostname="mx.example.test")
    r.cmd("EHLO client.example")
    return r


def test_auth_variants(sub):
    r = tls_session(sub.sub_port)
    # challenge form of PLAIN
    assert r.cmd("AUTH PLAIN")[0] == 334
    code, text = r.cmd("*")
    assert code == 501  # cancelled
    # bad base64
    code, text = r.cmd("AUTH PLAIN !!!notbase64")
    assert code == 501 and "5.5.2" in text
    # unknown mechanism
    assert r.cmd("AUTH CRAM-MD5")[0] == 504
    # LOGIN with challenges
    assert r.cmd("AUTH LOGIN")[0] == 334
    assert r.cmd(b64("demo@example.test"))[0] == 334
    code, text = r.cmd(b64("demo"))
    assert code == 235 and "2.7.0" in text
    assert r.cmd("AUTH PLAIN " + b64("\0demo@example.test\0demo"))[0] == 503
    r.close()
    # "=" is an empty initial response: malformed PLAIN
    r = tls_session(sub.sub_port)
    code, _ = r.cmd("AUTH PLAIN =")
    assert code == 501
    r.close()


def test_bruteforce_delays_then_blocks(sub):
    r = tls_session(sub.sub_port)
    codes = []
    for i in range(4):
        codes.append(r.cmd("AUTH PLAIN " + b64("\0demo@example.test\0wrong%d" % i))[0])
    assert codes[:3] == [535, 535, 535], codes
    assert codes[3] == 454, codes
    r.close()
    # the right password is refused while the block lasts
    r = tls_session(sub.sub_port)
    code, text = r.cmd("AUTH PLAIN " + b64("\0demo@example.test\0demo"))
    assert code == 454 and "4.7.0" in text
    r.close()
    log = sub.log()
    assert "SASL PLAIN authentication failed: authentication failure" in log
    # fail2ban's postfix-sasl style filter
    import re
    rx = re.compile(r"warning: [-._\w]+\[(?P<host>[0-9.]+)\]: SASL ((?i:LOGIN|PLAIN)) "
                    r"authentication failed:")
    assert len(rx.findall(log)) >= 3


def test_sni_two_certificates(kurier_factory):
    k = kurier_factory()
    a_cert, a_key = selfsigned(k.dir, "mail.alpha.test")
    b_cert, b_key = selfsigned(k.dir, "mail.beta.test")
    sni_dir = os.path.join(k.dir, "sni")
    os.mkdir(sni_dir)
    with open(os.path.join(sni_dir, "beta.pem"), "w") as f:
        f.write(open(b_cert).read() + open(b_key).read())
    os.chmod(os.path.join(sni_dir, "beta.pem"), 0o644)
    port = free_port()
    with open(k.conf, "a") as f:
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    tls implicit;\n"
                "    cert %s;\n    key %s;\n    sni_certs %s/*.pem;\n}\n"
                % (port, a_cert, a_key, sni_dir))
    k.add_domain("example.test")
    k.start()
    for name, want in (("mail.beta.test", "mail.beta.test"), ("mail.alpha.test",
                                                               "mail.alpha.test"),
                       ("unknown.test", "mail.alpha.test")):
        c = ssl.create_default_context(cafile=None)
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        s = c.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                          server_hostname=name)
        der = s.getpeercert(binary_form=True)
        s.close()
        pem = ssl.DER_cert_to_PEM_cert(der)
        out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem.encode(),
                             capture_output=True).stdout.decode()
        assert want in out, (name, out)


def test_authenticated_may_relay_unauthenticated_may_not(sub):
    r = Raw(sub.port)  # the MX listener
    r.reply()
    r.cmd("EHLO client.example")
    r.cmd("MAIL FROM:<demo@example.test>")
    assert r.cmd("RCPT TO:<x@remote.test>")[0] == 554
    r.close()


def test_submission_fixups_and_hidden_client(kurier_factory):
    k = kurier_factory()
    cert, key = selfsigned(k.dir, "mx.example.test")
    port = free_port()
    with open(k.conf, "a") as f:
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    tls implicit;\n"
                "    cert %s;\n    key %s;\n    hide_client on;\n}\n" % (port, cert, key))
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    with smtplib.SMTP_SSL("127.0.0.1", port, timeout=10, context=ctx()) as s:
        s.login("demo@example.test", "demo")
        # no Date:, no Message-ID: (RFC 6409 8.2, 8.3 lets the MSA add them)
        s.sendmail("demo@example.test", ["demo@example.test"],
                   b"From: demo@example.test\r\nSubject: fixups\r\n\r\nbody\r\n")
    body = open(k.wait_mail("demo@example.test")[0], "rb").read()
    head = body.split(b"\n\n", 1)[0]
    assert b"\nDate: " in head
    assert b"\nMessage-ID: <" in head
    assert b"with ESMTPSA" in head
    assert b"127.0.0.1" not in head  # hide_client
    # an MX delivery keeps the client in Received: and gets no fix-ups
    with smtplib.SMTP("127.0.0.1", k.port, timeout=10) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: mx\r\n\r\nbody\r\n")
    files = k.wait_mail("demo@example.test", 2)
    mx = [open(f, "rb").read() for f in files]
    mx = [m for m in mx if b"Subject: mx" in m][0].split(b"\n\n", 1)[0]
    assert b"[127.0.0.1]" in mx
    assert b"\nMessage-ID:" not in mx


def peer_subject(port, name="mx.example.test"):
    s = ctx().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                          server_hostname=name)
    der = s.getpeercert(binary_form=True)
    s.close()
    return subprocess.run(["openssl", "x509", "-noout", "-subject"],
                          input=ssl.DER_cert_to_PEM_cert(der).encode(),
                          capture_output=True).stdout.decode()


def test_sighup_reloads_certificates(kurier_factory):
    k = kurier_factory()
    cert, key = selfsigned(k.dir, "old.example.test")
    port = free_port()
    with open(k.conf, "a") as f:
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    tls implicit;\n"
                "    cert %s;\n    key %s;\n}\n" % (port, cert, key))
    k.add_domain("example.test")
    k.start()
    assert "old.example.test" in peer_subject(port)
    # the certificate is renewed in place, then kurierd is told
    new_cert, new_key = selfsigned(k.dir, "new.example.test")
    os.replace(new_cert, cert)
    os.replace(new_key, key)
    k.proc.send_signal(1)  # SIGHUP
    k.wait_log("reloaded configuration")
    assert "new.example.test" in peer_subject(port)
    # a broken key file keeps the running certificate
    with open(key, "w") as f:
        f.write("not a key\n")
    k.proc.send_signal(1)
    deadline = time.time() + 60  # safety net only
    while k.log().count("reloaded configuration") < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert "TLS certificate reload for 127.0.0.1:%d failed" % port in k.log()
    assert "new.example.test" in peer_subject(port)


def test_selfsigned_key_reloads_after_the_drop(kurier_factory):
    """Issue 9 item 13: `kurier tls selfsigned` run as root writes the key 0640 with the
    group of the configured user, so kurierd, running as that user after the drop,
    reads it again on SIGHUP; a key it cannot read gives an error that names the
    certificate reload and the file (not the listener), and the old certificate stays."""
    if os.geteuid() != 0:
        pytest.skip("kurierd drops privileges only when started as root")
    group = pwd.getpwnam("kurier").pw_gid  # "user" is kurier by default
    k = kurier_factory()
    out = k.cli("tls", "selfsigned", "old.example.test").stdout.decode()
    cert = os.path.join(k.dir, "var", "tls", "cert.pem")
    key = os.path.join(k.dir, "var", "tls", "key.pem")
    st = os.stat(key)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, group), out
    assert "mode 0640, group %s" % grp.getgrgid(group).gr_name in out
    assert stat.S_IMODE(os.stat(cert).st_mode) == 0o644
    port = free_port()
    with open(k.conf, "a") as f:
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    tls implicit;\n"
                "    cert %s;\n    key %s;\n}\n" % (port, cert, key))
    k.add_domain("example.test")
    k.start()
    assert "old.example.test" in peer_subject(port)

    def hup_and_wait(n):
        k.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 60  # safety net only
        while k.log().count("reloaded configuration") < n and time.time() < deadline:
            time.sleep(0.05)
        assert k.log().count("reloaded configuration") == n, k.log()[-3000:]

    # renewed in place as an admin would, then kurierd is told
    k.cli("tls", "selfsigned", "new.example.test", "--force")
    hup_and_wait(1)
    log = k.log()
    assert "TLS certificates for 127.0.0.1:%d reloaded" % port in log, log[-3000:]
    assert "Permission denied" not in log, log[-3000:]
    assert "new.example.test" in peer_subject(port)

    # what selfsigned wrote before: a key only root may read
    os.chmod(key, 0o600)
    hup_and_wait(2)
    errs = [l for l in k.log().splitlines() if "Permission denied" in l]
    assert len(errs) == 1, k.log()[-3000:]
    assert "TLS certificate reload for 127.0.0.1:%d failed" % port in errs[0], errs[0]
    # kurierd works inside state_dir, so paths below it are logged relative to it
    assert ": tls/key.pem: " in errs[0] or key in errs[0], errs[0]
    assert "listen 127.0.0.1" not in errs[0], errs[0]
    assert "new.example.test" in peer_subject(port)


def test_starttls_forgets_the_session(sub):
    """RFC 3207 4.2: after the handshake the client must EHLO again."""
    r = Raw(sub.sub_port)
    r.reply()
    r.cmd("EHLO client.example")
    assert r.cmd("STARTTLS")[0] == 220
    r.s = ctx().wrap_socket(r.s, server_hostname="mx.example.test")
    code, text = r.cmd("AUTH PLAIN " + b64("\0demo@example.test\0demo"))
    assert code == 503, text  # no EHLO yet inside TLS
    code, text = r.cmd("EHLO client.example")
    assert "STARTTLS" not in text
    assert r.cmd("STARTTLS")[0] in (502, 503)  # not twice
    r.close()
