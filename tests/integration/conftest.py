#!/usr/bin/python3
"""Fixtures that start the real kurierd on loopback ports with a config written per
test, and drive the kurier CLI. Every process started here is stopped here."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

# Every wait below ends as soon as its condition holds; the limits are safety nets
# for a hang, sized for the ASan build on a slow, busy machine (issue 9 item 17), not
# budgets for the work.
SAFETY = 120.0

BUILD = os.environ.get("KURIER_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
BUILD = os.path.abspath(BUILD)
KURIERD = os.path.join(BUILD, "kurierd")
KURIER = os.path.join(BUILD, "kurier")


_user_bin_dir = None


def for_user(path):
    """The path of a copy of the built program `path` (kurier, sendmail, mailq) that
    any local user can run: tests run commands as `nobody`, and a checkout in root's
    home (mode 0700) is out of their reach. One copy per test run, removed at exit."""
    global _user_bin_dir
    if _user_bin_dir is None:
        import atexit
        d = tempfile.mkdtemp(prefix="kurier-bin-")
        os.chmod(d, 0o755)
        shutil.copy2(KURIER, os.path.join(d, "kurier"))
        os.chmod(os.path.join(d, "kurier"), 0o755)
        for name in ("sendmail", "mailq"):  # chosen by argv[0], as in the build
            os.symlink("kurier", os.path.join(d, name))
        atexit.register(shutil.rmtree, d, True)
        _user_bin_dir = d
    return os.path.join(_user_bin_dir, os.path.basename(path))


# Under pytest-xdist (make check runs the suite with -n) each worker is a process of
# its own, named gw0, gw1, ... in PYTEST_XDIST_WORKER. A port the kernel picks (bind to
# port 0) could be picked again for another worker between free_port() and the bind by
# the daemon the test then starts; so each worker takes its ports in turn from a range
# of its own below the kernel's ephemeral range (where no automatic port comes from).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_PORT_SPAN = 1500
_next_port = None


def _worker_port():
    global _next_port
    n = int(_WORKER[2:]) if _WORKER[2:].isdigit() else 0
    base = 10000 + (n % 12) * _PORT_SPAN  # 10000 to 28000: below 32768
    if _next_port is None:
        import random  # another run on the machine at the same time starts elsewhere
        _next_port = random.randrange(_PORT_SPAN)
    for _ in range(_PORT_SPAN):
        port = base + _next_port
        _next_port = (_next_port + 1) % _PORT_SPAN
        yield port


def _port_free(host, port):
    """Free for TCP and for UDP (DNS servers take theirs from free_port too)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host="127.0.0.1"):
    if _WORKER.startswith("gw"):
        for port in _worker_port():
            if _port_free(host, port):
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=SAFETY, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("kurierd exited with %s" % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %s:%d did not open" % (host, port))


class Kurier:
    """One kurierd instance with its own state folder, config and ports."""

    def __init__(self, extra="", listen_extra="", queue=None, limits=None, reverse_dns=False,
                 host="127.0.0.1"):
        """host: the loopback address the MX listener (.host, .port) is on."""
        self.dir = tempfile.mkdtemp(prefix="kurier-test-")
        os.chmod(self.dir, 0o755)  # the daemon runs as user kurier after the drop
        self.host = host
        self.port = free_port(host)
        self.conf = os.path.join(self.dir, "kurier.conf")
        self.logfile = os.path.join(self.dir, "kurierd.log")
        self.maildir_root = os.path.join(self.dir, "mail")
        self.proc = None
        self.log_fh = None
        q = {"retry_first": "1s", "retry_max": "2s", "maildrop_scan": "1s"}
        q.update(queue or {})
        lim = dict(limits or {})
        qtext = "".join("    %s %s;\n" % kv for kv in q.items())
        ltext = "".join("    %s %s;\n" % kv for kv in lim.items())
        with open(self.conf, "w") as f:
            f.write(
                "hostname mx.example.test;\n"
                # client names come from the system's resolver otherwise; tests that
                # want them give their own (test_reverse_dns.py)
                "reverse_dns %s;\n"
                "state_dir %s/var;\n"
                "maildir_root %s;\n"
                "log {\n    target stderr;\n    level info;\n}\n"
                "queue {\n%s}\n"
                "limits {\n%s}\n"
                "listen %s:%d {\n    role mx;\n%s}\n"
                "%s\n" % ("on" if reverse_dns else "off", self.dir, self.maildir_root, qtext,
                          ltext, host, self.port,
                          listen_extra, extra))

    # --- CLI -------------------------------------------------------------------
    def cli(self, *args, input=None, check=True, prog=None, env=None):
        argv = [prog or KURIER]
        if prog is None:
            argv += ["-c", self.conf]
        argv += list(args)
        e = dict(os.environ, KURIER_CONF=self.conf)
        e.update(env or {})
        r = subprocess.run(argv, input=input, capture_output=True, timeout=SAFETY, env=e)
        if check and r.returncode != 0:
            raise AssertionError("%s failed (%d): %s %s" % (
                " ".join(argv), r.returncode, r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace")))
        return r

    def add_domain(self, d):
        self.cli("domain", "add", d)

    def add_mailbox(self, addr, password="secret", quota=None):
        args = ["mailbox", "add", addr, "--password", password]
        if quota is not None:
            args += ["--quota", str(quota)]
        self.cli(*args)

    # --- daemon ----------------------------------------------------------------
    def start(self):
        self.log_fh = open(self.logfile, "ab")
        start_at = len(self.log()) if os.path.exists(self.logfile) else 0
        self.proc = subprocess.Popen([KURIERD, "-c", self.conf], stdout=self.log_fh,
                                     stderr=self.log_fh)
        wait_port(self.host, self.port, proc=self.proc)
        # the port accepts (kernel backlog) before the control socket exists: wait for
        # the line that says everything is up
        deadline = time.time() + SAFETY
        while "daemon started" not in self.log()[start_at:]:
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("kurierd did not start:\n" + self.log()[-2000:])
            time.sleep(0.02)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=SAFETY):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        if self.log_fh:
            self.log_fh.close()
            self.log_fh = None
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def log(self):
        with open(self.logfile, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, text, timeout=SAFETY):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return True
            time.sleep(0.05)
        raise AssertionError("log never said %r:\n%s" % (text, self.log()[-3000:]))

    def wait_log_count(self, text, count, timeout=SAFETY):
        """Wait until the log says text count times (and no more); returns the log."""
        deadline = time.time() + timeout
        log = self.log()
        while log.count(text) < count and time.time() < deadline:
            time.sleep(0.1)
            log = self.log()
        assert log.count(text) == count, log[-3000:]
        return log

    def stop_clean(self):
        """Stop kurierd: it exits 0 and the sanitizers (ASan build) reported nothing:
        no memory error, no leak, no undefined behaviour. Returns the log."""
        assert self.stop() == 0
        log = self.log()
        assert "ERROR: AddressSanitizer" not in log
        assert "ERROR: LeakSanitizer" not in log
        assert "runtime error:" not in log
        return log

    def config_check_fails(self, path):
        """`kurier config check path` fails; returns what it said."""
        r = self.cli("config", "check", str(path), check=False)
        assert r.returncode != 0
        return r.stderr.decode() + r.stdout.decode()

    def queue_empty(self):
        r = self.cli("queue", "list", check=False)
        return r.returncode == 0 and "empty" in r.stdout.decode().lower()

    def wait_queue_empty(self, timeout=SAFETY):
        """Wait until every queued message has been dealt with: after this no
        delivery can follow from what was queued before."""
        deadline = time.time() + timeout
        while not self.queue_empty():
            if time.time() > deadline:
                raise AssertionError("queue not empty:\n%s\nlog:\n%s" % (
                    self.cli("queue", "list", check=False).stdout.decode(),
                    self.log()[-3000:]))
            time.sleep(0.1)

    # --- mailboxes ---------------------------------------------------------------
    def maildir_new(self, addr):
        local, domain = addr.split("@")
        d = os.path.join(self.maildir_root, domain, local, "Maildir", "new")
        if not os.path.isdir(d):
            return []
        return sorted(os.path.join(d, n) for n in os.listdir(d))

    def wait_mail(self, addr, count=1, timeout=SAFETY):
        deadline = time.time() + timeout
        while time.time() < deadline:
            files = self.maildir_new(addr)
            if len(files) >= count:
                return files
            time.sleep(0.05)
        raise AssertionError("%s got %d of %d messages; log:\n%s" % (
            addr, len(self.maildir_new(addr)), count, self.log()[-3000:]))

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def kurier_factory():
    made = []

    def make(**kw):
        k = Kurier(**kw)
        made.append(k)
        return k

    yield make
    for k in made:
        k.cleanup()


@pytest.fixture
def kurier(kurier_factory):
    """A running kurierd with domain example.test and mailbox demo@example.test."""
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    return k


class DnsHole:
    """A resolver that never answers: a UDP socket on a free loopback port (.port)
    that takes DNS queries and drops them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(SAFETY)
        self.port = self.sock.getsockname()[1]

    def wait_query(self, name):
        """Wait until a query holding name (wire form, e.g. b"\\x04slow\\x04test")
        came: the lookup is pending now."""
        while True:
            data, _ = self.sock.recvfrom(4096)
            if name in data.lower():
                return data

    def close(self):
        self.sock.close()


@pytest.fixture
def dns_hole():
    h = DnsHole()
    yield h
    h.close()


class Raw:
    """A raw SMTP connection: send exact bytes, read replies."""

    def __init__(self, port, host="127.0.0.1", timeout=60):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def reply(self):
        """Read one whole (possibly multi-line) reply; returns (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r" % self.buf)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=SAFETY):
        """True when the server closed the connection (EOF) within timeout."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


@pytest.fixture
def raw(kurier):
    conns = []

    def connect(port=None):
        r = Raw(port or kurier.port)
        conns.append(r)
        code, text = r.reply()
        assert code == 220, text
        return r

    yield connect
    for c in conns:
        c.close()


# The tests that take longest (thousands of messages with kill -9s; a build from a
# fresh clone; hundreds of reloads; hundreds of ASan CLI processes) run first.
# Under pytest-xdist (make check) they then start at once on different workers and
# the short tests fill the time around them, instead of one worker starting one of
# them when the rest are done. (file name, test function); the order is the same in
# every worker, as xdist requires.
LONG_FIRST = [
    ("test_crash.py", "test_kill9_loses_no_acknowledged_message"),
    ("test_make_run.py", "test_make_run_first_try_on_a_fresh_machine"),
    ("test_reload.py", "test_reloads_free_old_configs_while_sessions_finish"),
    ("test_cli_conventions.py", "test_every_command_and_subcommand_has_help"),
    ("test_bounces.py", "test_delay_notice_then_expiry"),
]


def pytest_collection_modifyitems(session, config, items):
    rank = {key: n for n, key in enumerate(LONG_FIRST)}

    def key(item):
        return rank.get((os.path.basename(str(item.fspath)), item.originalname), len(rank))

    items.sort(key=key)  # stable: the others keep their order
