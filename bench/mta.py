#!/usr/bin/python3
"""mta.py: the processes a bench run starts: smtp-sink, kurierd and a private Postfix
instance, each in its own temp folder on loopback ports. Every process started here is
stopped here, by its PID (Postfix by its own master PID)."""

import ctypes
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0, alive=None, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if alive is not None and not alive():
            raise RuntimeError("process for port %d exited" % port)
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                s.settimeout(5.0)
                s.recv(512)  # the banner: the listener is really serving
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %s:%d did not open" % (host, port))


def become_subreaper():
    """Daemons that fork away (Postfix's master) get reparented to us, so that we can
    reap them instead of leaving zombies. PR_SET_CHILD_SUBREAPER = 36."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except Exception:
        pass


def reap(pid, timeout):
    """Wait for a (possibly adopted) process to exit; True when it is gone."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r, _ = os.waitpid(pid, os.WNOHANG)
            if r == pid:
                return True
        except ChildProcessError:  # not our child: poll for its disappearance
            if not os.path.exists("/proc/%d" % pid):
                return True
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return True
            except OSError:
                return True
        time.sleep(0.05)
    return False


def proc_tree(root):
    """root and all its descendants (PIDs), from /proc."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if not os.path.exists("/proc/%d" % p):
            continue
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tids(pids):
    out = []
    for p in pids:
        try:
            out.extend(int(t) for t in os.listdir("/proc/%d/task" % p))
        except OSError:
            pass
    return out


def memory(pids):
    """(RSS sum, PSS sum) in bytes over the given processes."""
    rss = pss = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def count_dir(path):
    try:
        with os.scandir(path) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


class Sink:
    """smtp-sink on a free loopback port; dumps each message to a file on tmpfs (so
    the sink's own writes do not compete with the MTAs' spool for the disk)."""

    def __init__(self, base):
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else base
        self.dir = tempfile.mkdtemp(prefix="kurier-bench-sink-", dir=shm)
        os.chmod(self.dir, 0o755)  # smtp-sink writes as user postfix
        self.dump = os.path.join(self.dir, "dump")
        os.mkdir(self.dump)
        pw = pwd.getpwnam("postfix")
        os.chown(self.dump, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "sink.log"), "wb")
        self.argv = ["smtp-sink", "-u", "postfix", "-h", "sink.remote.test",
                     "-d", self.dump + "/%H%M%S.", "127.0.0.1:%d" % self.port, "1024"]
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=self.log)
        wait_port(self.port, alive=lambda: self.proc.poll() is None)

    def count(self):
        return count_dir(self.dump)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_cert(base):
    """A self-signed ECDSA P-256 certificate and key for both MTAs' STARTTLS (the same
    files for both). Returns (cert path, key path)."""
    cert, key = os.path.join(base, "tls-cert.pem"), os.path.join(base, "tls-key.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                        "/CN=mx.bench.test", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        os.chmod(cert, 0o644)
        os.chmod(key, 0o644)  # a throwaway key: both daemons read it after dropping
    return cert, key


class MTA:
    name = "?"

    def pids(self):
        raise NotImplementedError

    def delivered_local(self):
        return count_dir(os.path.join(self.maildir_root, "example.test", "bench",
                                      "Maildir", "new"))


class Kurier(MTA):
    name = "kurier"

    def __init__(self, base, bindir, relay_port=None, limits=None, tls=None):
        self.dir = tempfile.mkdtemp(prefix="kurier-", dir=base)
        os.chmod(self.dir, 0o755)  # kurierd runs as user kurier after the drop
        self.kurierd = os.path.join(bindir, "kurierd")
        self.kurier = os.path.join(bindir, "kurier")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "kurier.conf")
        self.logfile = os.path.join(self.dir, "kurierd.log")
        self.maildir_root = os.path.join(self.dir, "mail")
        lim = {"connections": 20000, "connections_per_ip": 20000}
        lim.update(limits or {})
        text = ("hostname mx.kurier.test;\n"
                "state_dir %s/var;\n"
                "maildir_root %s;\n"
                "log {\n    target stderr;\n    level info;\n}\n"
                "limits {\n%s}\n"
                "relay {\n    trusted_networks 127.0.0.0/8;\n}\n"
                % (self.dir, self.maildir_root,
                   "".join("    %s %s;\n" % kv for kv in lim.items())))
        if relay_port:
            text += "relay_host 127.0.0.1:%d;\n" % relay_port
        tls_lines = ("    tls starttls;\n    cert %s;\n    key %s;\n" % tls) if tls else ""
        text += "listen 127.0.0.1:%d {\n    role mx;\n%s}\n" % (self.port, tls_lines)
        with open(self.conf, "w") as f:
            f.write(text)
        self.conf_text = text
        self.cli("domain", "add", "example.test")
        self.cli("mailbox", "add", "bench@example.test", "--password", "x")
        self.proc = None

    def cli(self, *args):
        r = subprocess.run([self.kurier, "-c", self.conf] + list(args), capture_output=True,
                           timeout=30, env=dict(os.environ, KURIER_CONF=self.conf))
        if r.returncode != 0:
            raise RuntimeError("kurier %s failed: %s%s" % (
                " ".join(args), r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace")))
        return r.stdout.decode(errors="replace")

    def start(self):
        self.log_fh = open(self.logfile, "ab")
        self.proc = subprocess.Popen([self.kurierd, "-c", self.conf], stdout=self.log_fh,
                                     stderr=self.log_fh)
        wait_port(self.port, alive=lambda: self.proc.poll() is None)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        return proc_tree(self.proc.pid) if self.alive() else []

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = self.proc.returncode
            self.proc = None
            self.log_fh.close()
        return rc

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


POSTFIX_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""


class Postfix(MTA):
    """A private Postfix instance: own config_directory, queue_directory,
    data_directory and log file; default durability; no chroot."""
    name = "postfix"

    def __init__(self, base, relay_port=None, smtpd_procs=None, tls=None):
        self.dir = tempfile.mkdtemp(prefix="postfix-", dir=base)
        os.chmod(self.dir, 0o755)
        self.confdir = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.maildir_root = os.path.join(self.dir, "mail")
        self.logfile = os.path.join(self.dir, "postfix.log")
        for d in (self.confdir, self.queue, self.data, self.maildir_root):
            os.mkdir(d)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        ku = pwd.getpwnam("kurier")  # an ordinary unprivileged owner for the mailboxes
        os.chown(self.maildir_root, ku.pw_uid, ku.pw_gid)
        self.port = free_port()
        with open(os.path.join(self.confdir, "vmailbox"), "w") as f:
            f.write("bench@example.test example.test/bench/Maildir/\n")
        # smtpd processes: 150 by default here (100 concurrent client sessions fit);
        # the idle scenario raises the smtpd listener's own limit.
        procs = smtpd_procs or 150
        main = {
            "compatibility_level": "3.6",
            "config_directory": self.confdir,
            "queue_directory": self.queue,
            "data_directory": self.data,
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.postfix.test",
            "mydomain": "postfix.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "[127.0.0.1]:%d" % relay_port if relay_port else "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "maillog_file": self.logfile,
            "default_process_limit": str(max(150, procs)),
            "virtual_mailbox_domains": "example.test",
            "virtual_mailbox_maps": "texthash:%s/vmailbox" % self.confdir,
            "virtual_mailbox_base": self.maildir_root,
            "virtual_uid_maps": "static:%d" % ku.pw_uid,
            "virtual_gid_maps": "static:%d" % ku.pw_gid,
            "virtual_minimum_uid": "1",
            "smtpd_banner": "$myhostname ESMTP",
        }
        if tls:  # the STARTTLS scenario: offered, not required; tickets via tlsmgr
            main.update({"smtpd_tls_security_level": "may",
                         "smtpd_tls_cert_file": tls[0], "smtpd_tls_key_file": tls[1]})
        with open(os.path.join(self.confdir, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.confdir, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet  n       -       n       -       %d       smtpd\n"
                    % (self.port, procs))
            f.write(POSTFIX_SERVICES)
        self.main = main
        self.master_pid = None

    def postfix(self, *args, timeout=60):
        return subprocess.run(["postfix", "-c", self.confdir] + list(args),
                              capture_output=True, timeout=timeout)

    def start(self):
        r = self.postfix("start")
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: %s" % (r.stdout + r.stderr).decode(
                errors="replace"))
        with open(os.path.join(self.queue, "pid", "master.pid")) as f:
            self.master_pid = int(f.read().split()[0])
        wait_port(self.port, alive=self.alive)
        return self

    def alive(self):
        return self.master_pid is not None and os.path.exists("/proc/%d" % self.master_pid)

    def pids(self):
        return proc_tree(self.master_pid) if self.alive() else []

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.master_pid is None:
            return
        pids = self.pids()
        self.postfix("stop")
        if not reap(self.master_pid, 20):
            try:
                os.kill(self.master_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            reap(self.master_pid, 5)
        # children exit when the master goes; make sure none stays behind
        # (they are reparented to us, the subreaper, and reaped here)
        deadline = time.time() + 10
        for p in pids:
            if not reap(p, max(0.1, deadline - time.time())):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                reap(p, 2)
        self.master_pid = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
