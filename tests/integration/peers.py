#!/usr/bin/python3
"""The real peers kurier talks to in the integration tests, each started on a
loopback port and stopped again by a context manager: unbound serving test zones,
and Postfix's smtp-sink storing what it receives. kurierd itself is conftest.py's."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from conftest import SAFETY, free_port, wait_port

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"

# Answers come only from the zones given (they end in `local-zone: "." static`): no
# recursion, no caching, so a test sees each change of its zones at once.
UNBOUND_CONF = """server:
    interface: %(host)s@%(port)d
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "%(dir)s"
    pidfile: "%(dir)s/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-ip6: no
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    cache-max-ttl: 0
    cache-max-negative-ttl: 0
%(zones)s
remote-control:
    control-enable: no
"""


def dns_query_bytes(name, qtype=1, qid=0x1234):
    """A DNS query packet (RD set) for name and qtype."""
    q = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"


def wait_dns(port, probe, timeout=SAFETY, proc=None, host="127.0.0.1"):
    """Wait until a DNS server on host:port answers an MX query for probe."""
    deadline = time.time() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("unbound exited with %s" % proc.returncode)
            try:
                s.sendto(dns_query_bytes(probe, 15), (host, port))
                s.recvfrom(4096)
                return
            except OSError:
                time.sleep(0.05)
    raise RuntimeError("unbound on port %d did not answer" % port)


@contextlib.contextmanager
def unbound(zones, probe, host="127.0.0.1", port=None):
    """A real unbound on a free loopback port (or host:port) serving zones
    (unbound.conf server: lines); ready once it answers for the name probe. Yields
    "HOST@PORT"."""
    d = tempfile.mkdtemp(prefix="kurier-unbound-")
    port = port or free_port(host)
    conf = os.path.join(d, "unbound.conf")
    with open(conf, "w") as f:
        f.write(UNBOUND_CONF % {"host": host, "port": port, "dir": d, "zones": zones})
    chk = subprocess.run(["unbound-checkconf", conf], capture_output=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    log = open(os.path.join(d, "unbound.log"), "wb")
    proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], cwd=d, stdout=log, stderr=log)
    try:
        wait_dns(port, probe, proc=proc, host=host)
        yield "%s@%d" % (host, port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def stop(proc):
    """End a peer process: SIGTERM, then SIGKILL after 5 seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def smtp_sink(dump, host, port, *options):
    """Postfix's smtp-sink on host:port, storing each message as a file in the new
    folder dump (one "%M." file per message, written as user postfix); options go
    before the address ("-f", "rcpt", "-B", "550 ..."). Yields when it accepts."""
    os.mkdir(dump)
    shutil.chown(dump, "postfix")
    proc = subprocess.Popen([SMTP_SINK, "-u", "postfix", "-d", dump + "/%M.", *options,
                             "%s:%d" % (host, port), "50"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(host, port)
        yield proc
    finally:
        stop(proc)


RBLDNSD = shutil.which("rbldnsd") or "/usr/sbin/rbldnsd"


_rbldnsd_running = {}  # "HOST@PORT" -> (folder, process)


def rbldnsd_rewrite(addr, zone, text):
    """Replace the data of zone on the running rbldnsd at addr (as rbldnsd() yielded it)
    and make it reload (SIGHUP; it reloads files whose modification time changed)."""
    d, proc = _rbldnsd_running[addr]
    path = os.path.join(d, zone + ".zone")
    before = os.stat(path).st_mtime
    with open(path, "w") as f:
        f.write(text)
    os.utime(path, (before + 10, before + 10))  # a change even within the same second
    proc.send_signal(signal.SIGHUP)


@contextlib.contextmanager
def rbldnsd(zones, probe, host="127.0.0.1"):
    """A real rbldnsd (DNSBL server) on a free loopback UDP port. zones: {"bl.test":
    ("ip4set", "zone file text"), ...}. It answers only for its zones (REFUSED for the
    rest) and drops to user rbldns by itself, so its files are world-readable. Ready
    once it answers for the name probe. Yields "HOST@PORT"."""
    d = tempfile.mkdtemp(prefix="kurier-rbldnsd-")
    os.chmod(d, 0o755)
    port = free_port(host)
    args = [RBLDNSD, "-n", "-q", "-b", "%s/%d" % (host, port), "-w", d, "-p",
            os.path.join(d, "pid")]
    for zone, (kind, text) in zones.items():
        path = os.path.join(d, zone + ".zone")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        args.append("%s:%s:%s" % (zone, kind, zone + ".zone"))
    log = open(os.path.join(d, "rbldnsd.log"), "wb")
    proc = subprocess.Popen(args, cwd=d, stdout=log, stderr=log)
    addr = "%s@%d" % (host, port)
    _rbldnsd_running[addr] = (d, proc)
    try:
        wait_dns(port, probe, proc=proc, host=host)
        yield addr
    finally:
        _rbldnsd_running.pop(addr, None)
        stop(proc)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


POSTGREY = shutil.which("postgrey") or "/usr/sbin/postgrey"


@contextlib.contextmanager
def postgrey(delay, unix=False, host="127.0.0.1"):
    """Debian's postgrey (a Postfix policy server that greylists) in the foreground,
    with its own database folder, greylisting delay seconds, and empty client and
    recipient allowlists (its defaults are not read, so loopback is not allowlisted)
    and no auto-allowlisting. It runs as user postgrey and listens on a free loopback
    TCP port, or on a unix socket when unix is set. Yields (address for kurier's
    policy_service, folder holding postgrey.log)."""
    d = tempfile.mkdtemp(prefix="kurier-postgrey-")
    os.chmod(d, 0o755)
    db = os.path.join(d, "db")
    os.mkdir(db)
    shutil.chown(db, "postgrey", "postgrey")
    empty = os.path.join(d, "empty")
    open(empty, "w").close()
    os.chmod(empty, 0o644)
    if unix:
        where = os.path.join(d, "postgrey.sock")
        listen, service = "--unix=" + where, "unix:" + where
    else:
        port = free_port(host)
        listen, service = "--inet=%s:%d" % (host, port), "inet:%s:%d" % (host, port)
    log = open(os.path.join(d, "postgrey.log"), "wb")
    proc = subprocess.Popen([POSTGREY, listen, "--dbdir=" + db, "--delay=%d" % delay,
                             "--whitelist-clients=" + empty, "--whitelist-recipients=" + empty,
                             "--auto-whitelist-clients=0", "--user=postgrey",
                             "--group=postgrey", "--hostname=grey.test", "-v"],
                            stdout=log, stderr=log)
    try:
        deadline = time.time() + SAFETY
        while True:
            if proc.poll() is not None:
                raise RuntimeError("postgrey exited: " + open(log.name).read())
            if unix and os.path.exists(where):
                break
            if not unix:
                try:
                    with socket.create_connection((host, port), timeout=0.5):
                        break
                except OSError:
                    pass
            if time.time() > deadline:
                raise RuntimeError("postgrey did not start: " + open(log.name).read())
            time.sleep(0.05)
        yield service, d
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


class Listener:
    """A scripted TCP peer on host:port (port 0: a free one, then in .port): a thread
    accepts and hands each connection to self._session(c, client address), in a
    thread of its own (or in the accepting thread when threaded is false); with
    keep, stop() also closes the connections still open. Subclasses write
    _session; stop() ends it."""

    def __init__(self, host, port, backlog=20, threaded=True, keep=False):
        import threading
        self.threaded, self.keep, self.conns = threaded, keep, []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        import threading
        while not self.stopping:
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.keep:
                self.conns.append(c)
            if self.threaded:
                threading.Thread(target=self._session, args=(c, peer[0]), daemon=True).start()
            else:
                self._session(c, peer[0])

    def _session(self, c, ip):
        raise NotImplementedError

    def stop(self):
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.thread.join(timeout=5)


class Downstream(Listener):
    """A customer's own mail server behind kurier (relay domains): a small scripted
    SMTP server on host:port, one thread per session, without PIPELINING (so a probe
    waits at its RCPT). Addresses in users exist (250); others get "550 5.1.1 <addr>:
    user unknown in the customer's directory". A RCPT after MAIL FROM:<> is a probe,
    counted per address in .probes; messages (DATA) land in .messages as (sender,
    rcpts, data). While .hold is set, RCPT answers wait; .held counts RCPTs waiting,
    .hangups the sessions whose peer went away while one waited. .max_probes is the
    most probe transactions (MAIL FROM:<> to RSET, QUIT or hang-up) open at once.
    stop() ends it."""

    def __init__(self, host, port, users):
        import threading
        self.host, self.port, self.users = host, port, set(users)
        self.probes, self.messages = {}, []
        self.held = self.hangups = self.probing = self.max_probes = 0
        self.hold = threading.Event()
        self.lock = threading.Lock()
        super().__init__(host, port, backlog=50)

    def probe_count(self, addr=None):
        with self.lock:
            return sum(self.probes.values()) if addr is None else self.probes.get(addr, 0)

    def _wait_hold(self, c):
        """While held: 1 when the peer hung up meanwhile."""
        with self.lock:
            self.held += 1
        import select
        while self.hold.is_set():
            readable, _, _ = select.select([c], [], [], 0.02)
            if readable and c.recv(1, socket.MSG_PEEK) == b"":
                with self.lock:
                    self.hangups += 1
                return 1
            if readable:
                time.sleep(0.02)  # pipelined bytes wait for their turn
        return 0

    def _probe_end(self, state):
        if state["probe"]:
            state["probe"] = False
            with self.lock:
                self.probing -= 1

    def _session(self, c, ip):
        state = {"probe": False}
        c.settimeout(SAFETY)
        f = c.makefile("rb")

        def send(line):
            c.sendall((line + "\r\n").encode())

        try:
            send("220 %s ESMTP customer server" % self.host)
            mail, rcpts = None, []
            while True:
                raw = f.readline()
                if not raw:
                    return
                line = raw.decode(errors="replace").rstrip("\r\n")
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    send("250-%s" % self.host)
                    send("250 8BITMIME")
                elif verb == "MAIL":
                    mail, rcpts = line[10:].split()[0].strip("<>"), []
                    if mail == "" and not state["probe"]:
                        state["probe"] = True
                        with self.lock:
                            self.probing += 1
                            self.max_probes = max(self.max_probes, self.probing)
                    send("250 2.1.0 Ok")
                elif verb == "RCPT":
                    addr = line[8:].split()[0].strip("<>").lower()
                    if mail == "":
                        with self.lock:
                            self.probes[addr] = self.probes.get(addr, 0) + 1
                    if self.hold.is_set() and self._wait_hold(c):
                        return
                    if addr in self.users:
                        rcpts.append(addr)
                        send("250 2.1.5 Ok")
                    else:
                        send("550 5.1.1 <%s>: user unknown in the customer's directory" % addr)
                elif verb == "DATA":
                    send("354 go ahead")
                    data = []
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        data.append(l)
                    with self.lock:
                        self.messages.append((mail, list(rcpts), b"".join(data)))
                    send("250 2.0.0 Ok: queued")
                elif verb == "RSET":
                    mail, rcpts = None, []
                    self._probe_end(state)
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.2 Error: command not recognized")
        except OSError:
            pass
        finally:
            self._probe_end(state)
            c.close()
