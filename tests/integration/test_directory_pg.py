#!/usr/bin/python3
"""The directory in PostgreSQL (docs/postgres.md): a real PostgreSQL 15 started by the
test (initdb into a temporary folder, pg_ctl on a free loopback port, its socket in
that folder; as the postgres system user when the test runs as root) and two kurierd
nodes on the same database. What one node's CLI writes, both nodes use at RCPT and
AUTH; kurier directory export/import moves the directory between SQLite and
PostgreSQL; PostgreSQL down means 451 4.3.0 at RCPT and 454 4.7.0 at AUTH, never a
5xx, and the nodes serve again when it is back. Dovecot reads the same tables."""

import base64
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import SAFETY, Raw, free_port
from test_dovecot_auth import DOVECOT, Dovecot

PG_BIN = "/usr/lib/postgresql/15/bin"

pytestmark = pytest.mark.skipif(not os.access(os.path.join(PG_BIN, "initdb"), os.X_OK),
                                reason="PostgreSQL 15 not installed (scripts/install-deps)")


class Postgres:
    """One PostgreSQL server with its own data folder, on 127.0.0.1:port, with a role
    and database "kurier" (trust authentication: loopback and a private socket only)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kurier-pg-")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                 "--no-sync")
        self.start()
        self.psql("CREATE ROLE kurier LOGIN; CREATE ROLE dovecot LOGIN")
        self.psql("CREATE DATABASE kurier OWNER kurier")
        self.conninfo = "host=127.0.0.1 port=%d dbname=kurier user=kurier" % self.port

    def run(self, prog, *args, check=True):
        r = subprocess.run(self.as_user + [os.path.join(PG_BIN, prog)] + list(args),
                           capture_output=True, timeout=SAFETY, cwd=self.dir)
        if check and r.returncode != 0:
            raise AssertionError("%s failed: %s %s\n%s" % (prog, r.stdout.decode(),
                                                           r.stderr.decode(), self.log()))
        return r

    def start(self):
        self.run("pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", str(int(SAFETY)),
                 "-o", "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off"
                 % (self.port, self.dir), "start")

    def stop(self):
        self.run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", check=False)

    def psql(self, sql, db="postgres", user="postgres"):
        r = subprocess.run([os.path.join(PG_BIN, "psql"), "-h", self.dir, "-p", str(self.port),
                            "-U", user, "-d", db, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-c", sql], capture_output=True, timeout=SAFETY)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode()

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pg():
    p = Postgres()
    yield p
    p.cleanup()


AUTH_LISTENER = "    auth on;\n    auth_plaintext on;\n"


def pg_conf(pg):
    return 'directory_backend postgres;\ndirectory_conninfo "%s";\n' % pg.conninfo


@pytest.fixture
def nodes(kurier_factory, pg):
    """Two kurierd nodes (own state folders and ports) sharing the PostgreSQL directory."""
    a = kurier_factory(extra=pg_conf(pg) + "auth {\n    delay_max 0s;\n}\n",
                       listen_extra=AUTH_LISTENER)
    b = kurier_factory(extra=pg_conf(pg) + "auth {\n    delay_max 0s;\n}\n",
                       listen_extra=AUTH_LISTENER)
    a.add_domain("example.test")
    a.start()
    b.start()
    return a, b


def b64(s):
    return base64.b64encode(s.encode()).decode()


def session(k):
    r = Raw(k.port)
    assert r.reply()[0] == 220
    code, text = r.cmd("EHLO client.example")
    assert code == 250, text
    return r


def rcpt(k, addr):
    r = session(k)
    try:
        assert r.cmd("MAIL FROM:<sender@remote.example>")[0] == 250
        return r.cmd("RCPT TO:<%s>" % addr)
    finally:
        r.close()


def auth(k, user, password):
    r = session(k)
    try:
        return r.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (user, password)))
    finally:
        r.close()


def test_cli_on_one_node_is_seen_by_both(nodes, pg):
    a, b = nodes
    for k in (a, b):
        assert rcpt(k, "new@example.test")[0] == 550
    a.add_mailbox("new@example.test", "pw-one")
    for k in (a, b):
        code, text = rcpt(k, "New@Example.test")
        assert code == 250, text
        code, text = auth(k, "new@example.test", "pw-one")
        assert code == 235, text
        assert auth(k, "new@example.test", "wrong")[0] == 535
    # the hash PostgreSQL holds is the yescrypt one Dovecot reads as {CRYPT}
    assert pg.psql("SELECT password FROM mailboxes", db="kurier").startswith("$y$")
    # nothing went to the node's SQLite file
    r = b.cli("mailbox", "list")
    assert "new@example.test" in r.stdout.decode()

    # an alias added on node B, a password changed there: node A follows
    b.cli("alias", "add", "info@example.test", "new@example.test")
    b.cli("mailbox", "passwd", "new@example.test", "--password", "pw-two")
    assert rcpt(a, "info@example.test")[0] == 250
    assert auth(a, "new@example.test", "pw-two")[0] == 235
    assert auth(a, "new@example.test", "pw-one")[0] == 535

    # a second domain, a catch-all, then the domain removed again
    a.add_domain("other.test")
    assert rcpt(b, "x@other.test")[0] == 550
    a.cli("domain", "catchall", "other.test", "new@example.test")
    assert rcpt(b, "anything@other.test")[0] == 250
    a.cli("domain", "catchall", "other.test", "off")
    a.cli("domain", "del", "other.test")
    code, text = rcpt(b, "x@other.test")
    assert code == 554 or code == 550, text  # not hosted any more: no relaying
    r = a.cli("domain", "del", "example.test", check=False)
    assert r.returncode == 1
    assert "still has 1 mailbox and 1 alias" in r.stderr.decode()

    # sender grants and the binding mode, written on A, enforced on B
    def mail_as(k, sender):
        r = session(k)
        try:
            assert r.cmd("AUTH PLAIN " + b64("\0new@example.test\0pw-two"))[0] == 235
            return r.cmd("MAIL FROM:<%s>" % sender)
        finally:
            r.close()
    assert mail_as(b, "info@example.test")[0] == 250  # an alias that reaches the user
    code, text = mail_as(b, "boss@partner.example")
    assert code == 553 and "5.7.1" in text, text
    a.cli("mailbox", "grant", "new@example.test", "@partner.example")
    assert mail_as(b, "boss@partner.example")[0] == 250
    assert "@partner.example" in b.cli("mailbox", "grants").stdout.decode()
    a.cli("mailbox", "revoke", "new@example.test", "@partner.example")
    a.cli("domain", "binding", "example.test", "off")
    assert mail_as(b, "boss@partner.example")[0] == 250
    a.cli("domain", "binding", "example.test", "enforce")
    assert mail_as(b, "boss@partner.example")[0] == 553

    # relay routes and quotas are shared too
    a.cli("relay", "add", "@example.test", "smtp.partner.example:587")
    assert "smtp.partner.example:587" in b.cli("relay", "list").stdout.decode()
    a.cli("mailbox", "quota", "new@example.test", "5M")
    assert '"quota":5242880' in b.cli("mailbox", "list", "--json").stdout.decode()
    b.cli("relay", "del", "@example.test")

    # the mail itself goes to node B's own queue and maildir
    r = session(b)
    assert r.cmd("MAIL FROM:<sender@remote.example>")[0] == 250
    assert r.cmd("RCPT TO:<info@example.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    assert r.cmd("Subject: shared\r\n\r\nhello\r\n.")[0] == 250
    r.close()
    b.wait_mail("new@example.test")
    for k in (a, b):
        k.stop_clean()


def test_postgres_down_tempfails_then_recovers(nodes, pg):
    a, b = nodes
    a.add_mailbox("u@example.test", "pw")
    assert rcpt(b, "u@example.test")[0] == 250
    pg.stop()
    for k in (a, b):
        code, text = rcpt(k, "u@example.test")
        assert code == 451 and "4.3.0" in text, text
        code, text = rcpt(k, "unknown@example.test")
        assert code == 451, text  # not "no such user": we cannot know
        code, text = auth(k, "u@example.test", "pw")
        assert code == 454 and "4.7.0" in text, text
        code, text = auth(k, "u@example.test", "wrong")
        assert code == 454, text  # a tempfail is not a failed login
    assert "PostgreSQL directory" in a.log()
    # the CLI says what is wrong
    r = a.cli("mailbox", "list", check=False)
    assert r.returncode == 1 and "database error" in r.stderr.decode()
    # a node started while PostgreSQL is down starts, and tempfails the same way
    assert a.stop() == 0
    a.start()
    code, text = rcpt(a, "u@example.test")
    assert code == 451 and "4.3.0" in text, text
    pg.start()
    for k in (a, b):
        deadline = time.time() + SAFETY
        while rcpt(k, "u@example.test")[0] != 250:
            assert time.time() < deadline, k.log()[-2000:]
            time.sleep(0.2)
        assert auth(k, "u@example.test", "pw")[0] == 235
        assert rcpt(k, "unknown@example.test")[0] == 550
    assert "PostgreSQL directory reachable again" in a.log()
    for k in (a, b):
        log = k.stop_clean()
        assert " 5.1.1 <u@example.test>" not in log


def lines(text):
    return sorted(l for l in text.splitlines() if l and not l.startswith("#"))


def test_export_sqlite_import_postgres_and_back(kurier_factory, pg):
    lite = kurier_factory()
    lite.add_domain("example.test")
    lite.add_domain("b.test")
    lite.cli("domain", "catchall", "b.test", "two")
    lite.cli("domain", "binding", "b.test", "log")
    lite.add_mailbox("one@example.test", "p1", quota="2M")
    lite.add_mailbox("two@b.test", "p2")
    lite.cli("mailbox", "add", "three@b.test", input=b"p3\n")
    lite.cli("alias", "add", "info@example.test", "one@example.test")
    lite.cli("alias", "add", "info@example.test", "ext@remote.example")
    lite.cli("mailbox", "grant", "one@example.test", "@b.test")
    lite.cli("relay", "add", "@b.test", "smtp.remote.example:587", "--user", "cust",
             "--password-stdin", "--tls", "encrypt", input=b"tab\there\n")
    exported = lite.cli("directory", "export").stdout.decode()
    assert exported.startswith("# kurier directory 1\n")
    assert "relay\t@b.test\tsmtp.remote.example:587\tcust\ttab\\there\tencrypt" in exported

    node = kurier_factory(extra=pg_conf(pg) + "auth {\n    delay_max 0s;\n}\n",
                          listen_extra=AUTH_LISTENER)
    path = os.path.join(node.dir, "dir.txt")
    with open(path, "w") as f:
        f.write(exported)
    r = node.cli("directory", "import", path)
    assert "imported into postgres: 2 domains, 3 mailboxes, 2 aliases, 1 grants, 1 relay" \
        in r.stdout.decode()
    again = node.cli("directory", "export").stdout.decode()
    assert lines(again) == lines(exported)
    # idempotent: a second import changes nothing
    node.cli("directory", "import", input=exported.encode())
    assert lines(node.cli("directory", "export").stdout.decode()) == lines(exported)
    # the hashes moved: the old passwords log in at a node on PostgreSQL
    node.start()
    assert auth(node, "one@example.test", "p1")[0] == 235
    assert rcpt(node, "whoever@b.test")[0] == 250  # the catch-all
    node.stop_clean()

    # and back into a fresh SQLite node
    back = kurier_factory()
    back.cli("directory", "import", input=again.encode())
    assert lines(back.cli("directory", "export").stdout.decode()) == lines(exported)


def test_import_reports_bad_lines_and_changes_nothing(kurier_factory):
    k = kurier_factory()
    bad = ("# kurier directory 1\n"
           "domain\texample.test\t\tenforce\n"
           "mailbox\ta@example.test\t$y$abc\tlots\t1\n"
           "alias\tonly-one-field\n"
           "frobnicate\tx\n"
           "domain\tb.test\t\\q\tenforce\n")
    r = k.cli("directory", "import", input=bad.encode(), check=False)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "<stdin>:3: quota must be a number of bytes" in err
    assert "<stdin>:4: wrong number of fields" in err
    assert "<stdin>:5: unknown record" in err
    assert "<stdin>:6: invalid escape" in err
    assert "nothing imported: 4 errors" in err
    assert k.cli("domain", "list").stdout.decode() == ""
    r = k.cli("directory", "import", input=b"domain\tx.test\t\tenforce\n", check=False)
    assert r.returncode == 1
    assert "<stdin>:1: not a kurier directory export" in r.stderr.decode()
    # a line the store refuses names its line too
    r = k.cli("directory", "import", check=False, input=(
        "# kurier directory 1\nmailbox\ta@nowhere.test\t$y$x\t0\t1\n").encode())
    assert r.returncode == 1
    assert "<stdin>:2: no such domain nowhere.test" in r.stderr.decode()


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def documented_dovecot_sql(port):
    """dovecot-sql.conf.ext as docs/postgres.md shows it, connect pointed at our server:
    the test runs the documented queries, not a copy of them."""
    with open(os.path.join(ROOT, "docs", "postgres.md"), encoding="utf-8") as f:
        doc = f.read()
    block = [b for b in doc.split("```") if "driver = pgsql" in b][0].strip()
    out = []
    for line in block.splitlines():
        if line.startswith("connect ="):
            line = "connect = host=127.0.0.1 port=%d dbname=kurier user=dovecot" % port
        out.append(line)
    text = "\n".join(out) + "\n"
    assert "password_query = SELECT address AS user, password FROM mailboxes" in text
    return text


@pytest.mark.skipif(not os.path.exists("/usr/lib/dovecot/modules/auth/libdriver_pgsql.so")
                    and not os.path.exists("/usr/lib/dovecot/modules/libdriver_pgsql.so"),
                    reason="dovecot-pgsql not installed (scripts/install-deps)")
@pytest.mark.skipif(not os.access(DOVECOT, os.X_OK), reason="dovecot not installed")
def test_dovecot_reads_the_same_tables(kurier_factory, pg):
    admin = kurier_factory(extra=pg_conf(pg))
    admin.add_domain("example.test")
    admin.add_mailbox("imap@example.test", "imap-pw")
    admin.cli("mailbox", "quota", "imap@example.test", "1G")
    # the role Dovecot uses may read, not write (docs/postgres.md)
    pg.psql("GRANT SELECT ON mailboxes TO dovecot", db="kurier", user="kurier")
    sqlconf = os.path.join(pg.dir, "dovecot-sql.conf.ext")
    with open(sqlconf, "w") as f:
        f.write(documented_dovecot_sql(pg.port))
    os.chmod(sqlconf, 0o644)
    dc = Dovecot(passdb="driver = sql\n  args = %s" % sqlconf,
                 userdb="driver = sql\n  args = %s" % sqlconf)
    try:
        dc.start()
        k = kurier_factory(listen_extra=AUTH_LISTENER,
                           extra="auth {\n    backend dovecot;\n    dovecot_socket %s;\n"
                                 "    delay_max 0s;\n}\n" % dc.socket)
        k.start()
        code, text = auth(k, "imap@example.test", "imap-pw")
        assert code == 235, text + dc.log()
        assert auth(k, "imap@example.test", "wrong")[0] == 535
        k.stop_clean()
    finally:
        dc.cleanup()
