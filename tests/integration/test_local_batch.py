#!/usr/bin/python3
"""Local delivery shares its disk flushes (issue 16 item 5): copies written into
Maildirs close together are made durable as one batch (one syncfs, or fdatasync per
file on old kernels; one fsync per distinct new/), and a copy counts as delivered only
after its batch's flush. A burst to several mailboxes lands exactly once each; a
Maildir on a full file system defers (4.3.0) and delivers once there is room again."""

import os
import re
import shutil
import signal
import smtplib
import subprocess
import threading
import time

import pytest

from conftest import SAFETY

BOXES = ["a@example.test", "b@example.test", "c@example.test", "d@example.test"]


def message(tag, size=2048):
    head = "From: s@client.test\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\n" % (
        tag, tag)
    lines = ["%s line %d %s" % (tag, i, "y" * 40) for i in range(max(1, size // 60))]
    return head + "\r\n".join(lines) + "\r\n"


def stored(text):
    """What a Maildir file holds of message(tag): LF line ends."""
    return text.replace("\r\n", "\n").encode()


def mailbox_files(k, addr):
    return [open(p, "rb").read() for p in k.maildir_new(addr)]


def tmp_dir(k, addr):
    local, domain = addr.split("@")
    return os.path.join(k.maildir_root, domain, local, "Maildir", "tmp")


def check_mailbox(k, addr, want):
    """addr's new/ holds exactly the messages of `want` (tag -> text), once each,
    complete and in order, with our two header fields on top; tmp/ is empty."""
    got = {}
    for data in mailbox_files(k, addr):
        m = re.search(rb"^Subject: (\S+)$", data, re.M)
        assert m, data[:300]
        tag = m.group(1).decode()
        assert tag not in got, "%s delivered twice to %s" % (tag, addr)
        got[tag] = data
    assert sorted(got) == sorted(want), (addr, sorted(got), sorted(want))
    for tag, data in got.items():
        head, _, rest = data.partition(b"\n")
        assert head == b"Return-Path: <s@client.test>", head
        head, _, rest = rest.partition(b"\n")
        assert head == ("Delivered-To: %s" % addr).encode(), head
        assert rest.endswith(stored(want[tag]).split(b"\n\n", 1)[1]), (addr, tag)
    assert os.listdir(tmp_dir(k, addr)) == []


@pytest.fixture
def k(kurier_factory):
    k = kurier_factory()
    k.add_domain("example.test")
    for a in BOXES:
        k.add_mailbox(a)
    return k


def test_burst_to_several_mailboxes_lands_once_each(k):
    k.start()
    # 6 clients at once, 12 messages each, to one, two or three of the mailboxes
    want = {a: {} for a in BOXES}
    jobs = []
    for c in range(6):
        mine = []
        for i in range(12):
            tag = "m%d-%d" % (c, i)
            rcpts = [BOXES[(c + i + r) % len(BOXES)] for r in range(1 + (c + i) % 3)]
            text = message(tag, 1024 * (1 + i % 4))
            for a in rcpts:
                want[a][tag] = text
            mine.append((rcpts, text))
        jobs.append(mine)
    errors = []

    def client(mine):
        try:
            with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
                for rcpts, text in mine:
                    s.sendmail("s@client.test", rcpts, text)
        except Exception as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(m,)) for m in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SAFETY)
    assert not errors, errors
    for a in BOXES:
        k.wait_mail(a, count=len(want[a]))
    k.wait_queue_empty()
    for a in BOXES:
        check_mailbox(k, a, want[a])
    log = k.stop_clean()
    total = sum(len(v) for v in want.values())
    assert log.count("status=sent (delivered to maildir)") == total, log[-3000:]


def kernel_at_least(major, minor):
    rel = os.uname().release.split(".")
    try:
        return (int(rel[0]), int(re.match(r"\d+", rel[1]).group())) >= (major, minor)
    except (ValueError, AttributeError, IndexError):
        return False


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("strace"),
                    reason="tracing kurierd's flush calls needs root and strace")
@pytest.mark.skipif(not kernel_at_least(5, 8),
                    reason="before Linux 5.8 each copy is fdatasync'd (syncfs reports no "
                           "write errors there)")
def test_copies_of_one_message_share_one_flush(k):
    """One message to four mailboxes: the four copies are one batch: one syncfs for
    their data and one fsync per new/, where each copy used to be fsync'd alone."""
    k.start()
    out = os.path.join(k.dir, "strace.out")
    # -f with the process's ID: every thread (strace attaches them all before it
    # says "Process N attached")
    argv = ["strace", "-f", "-y", "-o", out, "-e", "trace=fsync,fdatasync,syncfs",
            "-p", str(k.proc.pid)]
    errlog = open(os.path.join(k.dir, "strace.err"), "w+b")
    st = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errlog)
    try:
        deadline = time.time() + SAFETY
        while time.time() < deadline and st.poll() is None:
            errlog.seek(0)
            if b"attached" in errlog.read():
                break
            time.sleep(0.05)
        text = message("shared")
        with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
            s.sendmail("s@client.test", BOXES, text)
        for a in BOXES:
            k.wait_mail(a)
        k.wait_queue_empty()
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(timeout=SAFETY)
        errlog.close()
    for a in BOXES:
        check_mailbox(k, a, {"shared": text})
    calls = [line for line in open(out).read().splitlines()
             if k.maildir_root + "/" in line and "resumed" not in line]
    on_files = [c for c in calls if "/Maildir/new>" not in c and "syncfs(" not in c]
    syncs = [c for c in calls if "syncfs(" in c]
    dirs = [c for c in calls if "/Maildir/new>" in c]
    assert on_files == [], calls
    assert len(syncs) == 1, calls
    assert len(dirs) == len(BOXES), calls
    k.stop_clean()


@pytest.fixture
def small_mail_fs(k):
    """The Maildirs on a 4 MiB tmpfs mounted by the test (root only)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a size-limited tmpfs needs root and mount(8)")
    os.makedirs(k.maildir_root, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs",
                        k.maildir_root], capture_output=True, timeout=SAFETY)
    if r.returncode != 0:
        pytest.skip("cannot mount tmpfs: %s" % r.stderr.decode(errors="replace").strip())
    try:
        yield k
    finally:
        k.stop()
        subprocess.run(["umount", "-l", k.maildir_root], capture_output=True, timeout=SAFETY)


def test_full_maildir_defers_then_delivers_once(small_mail_fs):
    k = small_mail_fs
    k.start()
    first = message("early", 2048)
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        s.sendmail("s@client.test", BOXES[:2], first)
    k.wait_mail(BOXES[0])
    k.wait_mail(BOXES[1])
    # fill the file system, leaving about 48 KiB: the next copies do not fit
    filler = os.path.join(k.maildir_root, "filler")
    with open(filler, "wb") as f:
        while True:
            st = os.statvfs(k.maildir_root)
            free = st.f_bavail * st.f_frsize
            if free <= 48 * 1024:
                break
            try:
                f.write(b"\0" * min(65536, free - 48 * 1024 + 4096))
                f.flush()
            except OSError:
                break
    big = {"big-%d" % i: message("big-%d" % i, 200 * 1024) for i in range(3)}
    with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
        for tag, text in big.items():
            s.sendmail("s@client.test", BOXES[:2], text)
    # every copy of every big message deferred once (one log line per recipient); a
    # delivery still writing its copy into tmp/ would race the checks below
    want_deferred = len(big) * 2
    deadline = time.time() + SAFETY
    while k.log().count("dsn=4.3.0, status=deferred") < want_deferred and time.time() < deadline:
        time.sleep(0.1)
    log = k.log()
    assert log.count("dsn=4.3.0, status=deferred") >= want_deferred, log[-3000:]
    assert "status=deferred (cannot write" in log, log[-3000:]
    for a in BOXES[:2]:
        assert len(k.maildir_new(a)) == 1  # only the early one
        # no half-written copy left behind (a retry may be writing one right now:
        # wait for it to be cleaned up; one that stays is a leak)
        deadline = time.time() + SAFETY
        while os.listdir(tmp_dir(k, a)) and time.time() < deadline:
            time.sleep(0.1)
        assert os.listdir(tmp_dir(k, a)) == []
    os.unlink(filler)  # room again: the next retry delivers each copy once
    for a in BOXES[:2]:
        k.wait_mail(a, count=1 + len(big))
    k.wait_queue_empty()
    want = dict(big, early=first)
    for a in BOXES[:2]:
        check_mailbox(k, a, want)
    k.stop_clean()
