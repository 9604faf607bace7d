#!/usr/bin/python3
"""The spool on a full file system (issue 16 item 2): the spool folder is a small
tmpfs with a size limit, mounted by the test (root only). A message that does not fit
gets 451 4.3.0 (never 250), the daemon keeps serving, the mail it accepted before is
delivered, and once there is room again new mail is accepted. Only what a client and
the next hop see is checked (SMTP replies, delivered mail), not the spool's format."""

import os
import shutil
import smtplib
import subprocess

import pytest

import peers
from conftest import SAFETY, free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"),
    reason="mounting a size-limited tmpfs needs root and mount(8)")

TMPFS_SIZE = 128 << 20  # room for a preallocated spool file; the test fills the rest
LEFT_FREE = 1 << 20     # what the filler leaves
BIG = 4 << 20           # a message that does not fit into what is left


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0755" % size,
                        "tmpfs", path], capture_output=True, timeout=SAFETY)
    if r.returncode != 0:
        pytest.skip("cannot mount tmpfs: %s" % r.stderr.decode(errors="replace").strip())


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True, timeout=SAFETY)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave):
    """A filler file that leaves about `leave` bytes free on path's file system."""
    filler = os.path.join(path, "filler")
    with open(filler, "ab") as f:
        chunk = b"\0" * (1 << 20)
        while free_bytes(path) > leave:
            n = min(len(chunk), free_bytes(path) - leave)
            try:
                f.write(chunk[:max(n, 4096)])
                f.flush()
            except OSError:
                break
    return filler


def message(tag, size=1024):
    head = "From: a@client.test\r\nTo: rcpt@remote.test\r\nSubject: %s\r\n\r\n" % tag
    line = "%s %s\r\n" % (tag, "x" * (76 - len(tag) - 1))
    return head + line * max(1, (size - len(head)) // len(line))


class Client:
    def __init__(self, port):
        self.c = smtplib.SMTP("127.0.0.1", port, timeout=SAFETY)
        self.c.ehlo("client.test")

    def send(self, tag, size=1024):
        """(code, text) of the reply to the end of DATA."""
        try:
            self.c.sendmail("a@client.test", ["rcpt@remote.test"], message(tag, size))
            return 250, ""
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode(errors="replace")

    def close(self):
        try:
            self.c.quit()
        except (smtplib.SMTPException, OSError):
            self.c.close()


def delivered_tags(dump):
    tags = []
    for name in os.listdir(dump):
        with open(os.path.join(dump, name), "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                if line.startswith("Subject: "):
                    tags.append(line[len("Subject: "):].strip())
                    break
    return tags


def wait_delivered(k, dump, want):
    import time
    deadline = time.time() + SAFETY
    while time.time() < deadline:
        if sorted(delivered_tags(dump)) == sorted(want):
            return
        time.sleep(0.2)
    raise AssertionError("delivered %s, want %s; log:\n%s" % (
        sorted(delivered_tags(dump)), sorted(want), k.log()[-3000:]))


@pytest.fixture
def spool_fs(kurier_factory):
    """kurierd whose spool_dir is a 128 MiB tmpfs; remote mail goes to relay_host, where
    nothing listens until the test starts a sink (so accepted mail stays queued)."""
    relay_port = free_port()
    k = kurier_factory(extra="relay {\n    trusted_networks 127.0.0.0/8;\n}\n"
                             "relay_host 127.0.0.1:%d;\n" % relay_port)
    spool = os.path.join(k.dir, "spoolfs")
    mount_tmpfs(spool, TMPFS_SIZE)
    try:
        with open(k.conf, "a") as f:
            f.write("spool_dir %s;\n" % spool)
        k.add_domain("example.test")
        k.start()
        yield k, spool, relay_port
    finally:
        k.stop()
        umount(spool)


def test_full_spool_answers_451_keeps_serving_and_loses_nothing(spool_fs):
    k, spool, relay_port = spool_fs
    accepted = []
    c = Client(k.port)
    for i in range(3):  # accepted while there is room; the relay is down: they wait
        code, text = c.send("before-%d" % i)
        assert code == 250, text
        accepted.append("before-%d" % i)
    c.close()

    filler = fill(spool, LEFT_FREE)
    # Big messages until one does not fit: with one file per message the first one;
    # a spool that preallocates its files takes some into the room it already has.
    c = Client(k.port)
    refused = None
    for i in range(TMPFS_SIZE // BIG + 4):
        tag = "big-%d" % i
        code, text = c.send(tag, BIG)
        if code == 250:
            accepted.append(tag)
            continue
        assert code == 451 and "4.3.0" in text, (code, text)
        refused = tag
        break
    assert refused, "every message was accepted on a full file system"
    # the session and the daemon keep serving: the next transaction, a new session
    assert c.c.noop()[0] == 250
    c.close()
    c2 = Client(k.port)
    assert c2.c.noop()[0] == 250
    c2.close()
    assert k.proc.poll() is None

    # room again: the mail accepted before goes out, once each; new mail is accepted
    os.unlink(filler)
    dump = os.path.join(k.dir, "dump")
    with peers.smtp_sink(dump, "127.0.0.1", relay_port):
        c = Client(k.port)
        code, text = c.send("after", BIG)
        assert code == 250, text
        accepted.append("after")
        c.close()
        wait_delivered(k, dump, accepted)
        k.wait_queue_empty()
    assert refused not in delivered_tags(dump)
    k.stop_clean()
