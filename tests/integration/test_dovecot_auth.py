#!/usr/bin/python3
"""AUTH against a real Dovecot (auth { backend dovecot; }): kurierd asks Dovecot's
auth-client socket, as Postfix's smtpd_sasl_type = dovecot does. The test starts
Debian's dovecot in the foreground with its own base_dir and a passwd-file; the user
exists only there, not in kurier's directory. AUTH PLAIN/LOGIN on a plaintext MX
listener (auth_plaintext, tests only)."""

import base64
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import KURIERD, SAFETY, Raw

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
AUTH_LISTENER = "    auth on;\n    auth_plaintext on;\n"
USER = "user@example.test"
PASS = "secret"

pytestmark = pytest.mark.skipif(not os.access(DOVECOT, os.X_OK),
                                reason="dovecot not installed (scripts/install-deps)")


class Dovecot:
    """One dovecot master in the foreground (-F), all state under its own folder."""

    def __init__(self, passdb=None, userdb=None):
        """passdb, userdb: the bodies of those blocks (test_directory_pg.py reads
        kurier's PostgreSQL tables); by default a passwd-file with USER."""
        self.dir = tempfile.mkdtemp(prefix="kurier-dovecot-")
        os.chmod(self.dir, 0o755)  # kurierd (user kurier) must reach run/auth-client
        self.run = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.run, "auth-client")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.logfile = os.path.join(self.dir, "dovecot.log")
        self.proc = None
        users = os.path.join(self.dir, "users")
        with open(users, "w") as f:
            f.write("%s:{PLAIN}%s\n" % (USER, PASS))
        os.chmod(users, 0o644)
        if os.geteuid() == 0:
            internal, login = "dovecot", "dovenull"  # made by the Debian package
        else:
            internal = login = pwd.getpwuid(os.geteuid()).pw_name
        with open(self.conf, "w") as f:
            f.write(
                "protocols =\n"
                "base_dir = %(d)s/run\n"
                "state_dir = %(d)s/state\n"
                "log_path = %(log)s\n"
                "ssl = no\n"
                "disable_plaintext_auth = no\n"
                "auth_mechanisms = plain login\n"
                "auth_verbose = yes\n"
                "auth_failure_delay = 0\n"
                "default_internal_user = %(internal)s\n"
                "default_login_user = %(login)s\n"
                "passdb {\n  %(passdb)s\n}\n"
                "userdb {\n  %(userdb)s\n}\n"
                "service auth {\n  unix_listener auth-client {\n    mode = 0666\n  }\n}\n"
                % {"d": self.dir, "log": self.logfile, "internal": internal, "login": login,
                   "passdb": passdb or "driver = passwd-file\n  args = %s" % users,
                   "userdb": userdb or "driver = static\n  args = uid=nobody gid=nogroup "
                                       "home=/nonexistent"})

    def start(self, timeout=SAFETY):
        # Its own process group: the children (auth, log, anvil, stats) outlive the
        # master while clients stay connected, and stop() must end them too.
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited: %s" % self.proc.stderr.read().decode())
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket)
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("dovecot auth socket never appeared; log:\n%s" % self.log())

    def stop(self):
        """Stop the master (SIGTERM to its pid), then whatever of its process group
        is left: a stopped Dovecot answers no one."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        self.proc = None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.time() + 5
            while time.time() < deadline:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def dovecot():
    d = Dovecot()
    d.start()
    yield d
    d.cleanup()


@pytest.fixture
def k(kurier_factory, dovecot):
    """kurierd with AUTH on its MX listener checked by the Dovecot above. Its own
    directory holds demo@example.test/demo, which must not log in."""
    k = kurier_factory(listen_extra=AUTH_LISTENER,
                       extra="auth {\n    backend dovecot;\n    dovecot_socket %s;\n"
                             "    delay_max 0s;\n}\n" % dovecot.socket)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    k.dovecot = dovecot
    return k


def b64(s):
    return base64.b64encode(s.encode()).decode()


def session(k):
    r = Raw(k.port)
    code, text = r.reply()
    assert code == 220, text
    code, text = r.cmd("EHLO client.example")
    assert code == 250 and "AUTH PLAIN LOGIN" in text, text
    return r


def plain(k, user, password):
    r = session(k)
    try:
        return r.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (user, password)))
    finally:
        r.close()


def test_good_password_then_mail(k):
    r = session(k)
    code, text = r.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASS)))
    assert code == 235 and "2.7.0" in text, text
    # The login binds the sender as with the directory backend.
    assert r.cmd("MAIL FROM:<%s>" % USER)[0] == 250
    assert r.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    code, text = r.cmd("From: <%s>\r\nSubject: via dovecot\r\n\r\nhello\r\n." % USER)
    assert code == 250, text
    r.cmd("QUIT")
    r.close()
    k.wait_mail("demo@example.test")
    assert "sasl_method=PLAIN, sasl_username=%s" % USER in k.log()


def test_login_mechanism(k):
    r = session(k)
    assert r.cmd("AUTH LOGIN")[0] == 334
    assert r.cmd(b64(USER))[0] == 334
    code, text = r.cmd(b64(PASS))
    assert code == 235, text
    r.close()


def test_bad_password_and_directory_user(k):
    code, text = plain(k, USER, "wrong")
    assert code == 535 and "5.7.8" in text, text
    # kurier's own mailbox is not consulted with backend dovecot
    code, text = plain(k, "demo@example.test", "demo")
    assert code == 535, text
    assert ("SASL PLAIN authentication failed: authentication failure, sasl_username=%s"
            % USER) in k.log()
    # Dovecot saw the client's address (rip=) and refused the password itself.
    deadline = time.time() + SAFETY
    while "Password mismatch" not in k.dovecot.log() and time.time() < deadline:
        time.sleep(0.05)
    log = k.dovecot.log()
    assert "passwd-file(%s,127.0.0.1" % USER in log, log
    assert "Password mismatch" in log, log


def test_dovecot_down_is_temporary_and_recovers(k):
    assert plain(k, USER, PASS)[0] == 235  # kurierd now holds a pooled connection
    k.dovecot.stop()
    code, text = plain(k, USER, PASS)
    assert code == 454 and "4.7.0" in text, text
    k.wait_log("dovecot auth socket %s" % k.dovecot.socket)
    # A temporary failure counts against no one: the right password works once
    # Dovecot is back, on a new connection.
    k.dovecot.start()
    code, text = plain(k, USER, PASS)
    assert code == 235, text


def test_dovecot_missing_at_startup(kurier_factory):
    k = kurier_factory(listen_extra=AUTH_LISTENER)
    with open(k.conf, "a") as f:  # in k.dir: the daemon's user can look there
        f.write("auth {\n    backend dovecot;\n    dovecot_socket %s/nowhere;\n}\n" % k.dir)
    k.start()  # the socket is only needed when someone logs in
    code, text = plain(k, USER, PASS)
    assert code == 454 and "4.7.0" in text, text
    k.wait_log("connect: No such file or directory")


def test_config_rows(kurier_factory):
    k = kurier_factory(extra="auth {\n    backend ldap;\n}\n")
    r = subprocess.run([KURIERD, "-t", "-c", k.conf], capture_output=True, timeout=30)
    assert r.returncode == 1 and b"backend" in r.stderr, r.stderr
    dump = kurier_factory().cli("config", "dump").stdout.decode()
    assert "backend directory;" in dump, dump
    assert 'dovecot_socket "/run/dovecot/auth-client";' in dump, dump
