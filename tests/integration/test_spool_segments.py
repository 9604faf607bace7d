#!/usr/bin/python3
"""The segment spool (issue 16 items 1 and 2): records in queue/NNNNNNNNNN.seg, one
flush per group commit. What must hold: a kill -9 while a segment is reclaimed loses
no acknowledged message; a torn or garbled record at a segment's end is skipped with
a log line and never read as a message; a full file system answers 451 4.3.0 and
loses nothing accepted before; the old layout (queue/ID.env + ID.msg) is imported;
the CLI changes the queue itself only while no daemon runs, under its lock."""

import os
import re
import smtplib
import socket
import subprocess
import tempfile
import time

import pytest

import segments
from conftest import KURIERD, SAFETY
from peers import Downstream
from test_crash import Sender, delivered_seqs, maildir_files, sending, wait_progress

REMOTE = "someone@remote.test"


def spool_of(k):
    return os.path.join(k.dir, "var", "spool")


def submit(k, subject, rcpt, sender="alice@example.test"):
    """One message over SMTP: (code, text) of the DATA reply."""
    msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n" % (
        sender, rcpt, subject, subject)).encode()
    with smtplib.SMTP("127.0.0.1", k.port, timeout=60) as s:
        s.ehlo("client.example")
        s.mail(sender)
        s.rcpt(rcpt)
        return s.data(msg)


def queue_id(reply):
    m = re.search(rb"queued as ([0-9A-Z]+)", reply[1])
    assert m, reply
    return m.group(1).decode()


# --- kill -9 while a segment is reclaimed ------------------------------------------

def test_kill9_during_segment_reclamation_loses_nothing(kurier_factory, monkeypatch):
    # small segments, and each reclamation held up, so the kills land inside one
    monkeypatch.setenv("KURIER_TEST_SEGMENT_SIZE", "16384")
    monkeypatch.setenv("KURIER_TEST_DELAY", "reclaim=300")
    n = 1200  # enough mail that three reclamations come before the sender is done
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    sender = Sender(k.port, n)
    kills = 0
    with sending(k, sender):
        while kills < 3 and sender.is_alive():
            seen = k.log().count("reclaiming ")
            wait_progress(k, lambda: k.log().count("reclaiming ") > seen or not sender.is_alive(),
                          lambda: (len(sender.acked), k.log().count("reclaimed")),
                          "waiting for a reclamation (kill %d)" % (kills + 1))
            if not sender.is_alive():
                break
            k.kill9()  # within the 300 ms between "reclaiming" and the unlink
            kills += 1
            k.start()
    assert kills == 3, "only %d reclamations seen:\n%s" % (kills, k.log()[-3000:])
    wait_progress(k, k.queue_empty, lambda: maildir_files(k), "the queue drains", interval=0.5)
    counts = delivered_seqs(k)
    lost = sorted(sender.acked - set(counts))
    assert not sender.pending
    assert not lost, "%d acknowledged messages lost: %s\n%s" % (len(lost), lost[:50],
                                                                 k.log()[-3000:])
    # the dead segments go: after the queue drained only the current one and the
    # ones in front of it that are being reclaimed right now are left
    log = k.log()
    assert "reclaimed: no queued message left in it" in log
    k.stop()
    k.start()
    k.wait_log("scheduler started")
    deadline = time.time() + SAFETY
    while len(segments.files(spool_of(k))) > 1 and time.time() < deadline:
        time.sleep(0.1)
    assert len(segments.files(spool_of(k))) <= 1, segments.files(spool_of(k))
    log = k.log()
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log[-3000:]


# --- the next segment, made ahead --------------------------------------------------

def submit_many(k, n, tag, size=2000):
    body = "x" * 76 + "\r\n"
    with smtplib.SMTP("127.0.0.1", k.port, timeout=60) as s:
        s.ehlo("client.example")
        for i in range(n):
            msg = ("From: alice@example.test\r\nTo: demo@example.test\r\nSubject: %s %d"
                   "\r\n\r\n%s" % (tag, i, body * (size // len(body)))).encode()
            s.sendmail("alice@example.test", ["demo@example.test"], msg)


def test_next_segment_is_made_ahead_and_an_unused_one_is_harmless(kurier_factory,
                                                                   monkeypatch):
    """Once the current segment is half full a worker makes the next one (a commit
    that had to make it would wait for a flush of queue/); the mail goes on into it
    when the first is full. One made and never used is an empty segment: a restart
    skips it without a word and removes it once it is the oldest."""
    size = 65536
    monkeypatch.setenv("KURIER_TEST_SEGMENT_SIZE", str(size))
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    spool = spool_of(k)
    submit_many(k, 1, "first")
    first = segments.files(spool)
    assert len(first) == 1, first
    # past half of it (about 2.3 KB of records per message), not full
    submit_many(k, 16, "half")
    assert segments.written_end(first[0]) > size // 2
    deadline = time.time() + SAFETY
    while len(segments.files(spool)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    files = segments.files(spool)
    assert len(files) == 2, (files, k.log()[-2000:])
    spare = files[1]
    assert int(os.path.basename(spare)[:10]) == int(os.path.basename(first[0])[:10]) + 1
    assert os.path.getsize(spare) == size and segments.records(spare) == []
    # the mail goes on into it once the first is full: no segment made on the way
    submit_many(k, 14, "full")
    assert segments.records(spare), "the segment made ahead was not used"
    k.wait_mail("demo@example.test", 31)
    # stopped with a spare made and unused (the second is half full by now)
    submit_many(k, 8, "more")
    unused = os.path.join(os.path.dirname(spare), "%010d.seg" % (
        int(os.path.basename(spare)[:10]) + 1))
    deadline = time.time() + SAFETY
    while not os.path.exists(unused) and time.time() < deadline:
        time.sleep(0.05)
    assert os.path.exists(unused) and segments.records(unused) == [], segments.files(spool)
    k.wait_mail("demo@example.test", 39)
    k.stop()
    k.start()
    submit_many(k, 2, "after")
    k.wait_mail("demo@example.test", 41)
    k.wait_queue_empty()
    deadline = time.time() + SAFETY
    while os.path.exists(unused) and time.time() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(unused), segments.files(spool)
    log = k.log()
    assert "bad record" not in log and "cannot create segment" not in log, log[-3000:]
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log[-3000:]
    k.stop()


def test_commits_do_not_wait_for_a_reclamation(kurier_factory, monkeypatch):
    """Removing a dead segment costs a flush of queue/ of its own: it runs beside the
    commits, not inside one (a batch whose 250s waited for it stalled every session's
    commit behind it). Each reclamation is held up here for a long time: while one is
    held, further mail is still accepted."""
    monkeypatch.setenv("KURIER_TEST_SEGMENT_SIZE", "16384")
    monkeypatch.setenv("KURIER_TEST_DELAY", "reclaim=60000")
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    try:
        n = 0
        while "reclaiming " not in k.log() and n < 400:
            code, text = submit(k, "seq %d" % n, "demo@example.test")
            assert code == 250, (code, text)
            n += 1
            k.wait_mail("demo@example.test", n)  # delivered and removed: segments die
        assert "reclaiming " in k.log(), k.log()[-3000:]
        # the reclamation sleeps for a minute; mail goes on meanwhile
        for i in range(20):
            code, text = submit(k, "during %d" % i, "demo@example.test")
            assert code == 250, (code, text)
        assert "reclaimed: no queued message left" not in k.log(), k.log()[-3000:]
        k.wait_mail("demo@example.test", n + 20)
    finally:
        k.kill9()  # not waiting a minute for the held reclamation
    log = k.log()
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log[-3000:]


# --- torn and garbled records --------------------------------------------------------

@pytest.fixture
def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


def relay_conf(port):
    return ("relay {\n    trusted_networks 127.0.0.0/8;\n}\n"
            "relay_host 127.0.0.1:%d;\n"
            "outbound {\n    connect_timeout 5s;\n}\n" % port)


@pytest.mark.parametrize("damage", ["torn", "truncated", "garbled"])
def test_bad_record_at_segment_end_is_skipped_and_never_misread(kurier_factory, dead_port,
                                                                 damage):
    """Three messages wait for a next hop that is down; the daemon stops and the end of
    its segment is damaged as a power loss in the middle of a write leaves it: a
    further message whose envelope record is cut short ("torn": the rest of the
    preallocated file reads as zeros; "truncated": the file ends inside the record),
    or a flipped byte in the last record ("garbled"). At the restart the damage is
    logged and skipped, the three are delivered, the half-written one never."""
    port = dead_port.getsockname()[1]
    k = kurier_factory(extra=relay_conf(port), queue={"retry_first": "1h", "retry_max": "1h"})
    k.add_domain("example.test")
    k.start()
    ids = [queue_id(submit(k, "kept %d" % i, REMOTE)) for i in range(3)]
    for qid in ids:
        k.wait_log("%s: to=<%s>" % (qid, REMOTE))
    k.stop()
    spool = spool_of(k)
    seg = segments.files(spool)[-1]
    end = segments.written_end(seg)
    msgs = segments.messages(spool)
    assert sorted(msgs) == sorted(ids), msgs.keys()
    ghost = "CRG0000000000G"  # a valid queue ID, never acknowledged
    env = msgs[ids[0]][1].replace(ids[0], ghost).encode()
    content = b"Subject: ghost\r\n\r\nnever acknowledged\r\n"
    if damage == "garbled":
        off, kind, qid, payload = segments.records(seg)[-1]
        with open(seg, "r+b") as f:
            f.seek(off + segments.HDR + len(payload) // 2)
            b = f.read(1)
            f.seek(off + segments.HDR + len(payload) // 2)
            f.write(bytes([b[0] ^ 0x20]))
        bad_at = off
    else:
        data = segments.record(b"C", ghost, content) + segments.record(b"E", ghost, env)
        cut = len(data) - len(env) // 2  # the envelope's payload only half written
        with open(seg, "r+b") as f:
            f.seek(end)
            f.write(data[:cut])
            if damage == "truncated":
                f.truncate(end + cut)
        bad_at = end + len(segments.record(b"C", ghost, content))
    with socket.socket() as probe:  # the next hop comes up on a new port
        probe.bind(("127.0.0.1", 0))
        new_port = probe.getsockname()[1]
    with open(k.conf) as f:
        conf = f.read().replace("relay_host 127.0.0.1:%d;" % port,
                                "relay_host 127.0.0.1:%d;" % new_port)
    with open(k.conf, "w") as f:
        f.write(conf)
    down = Downstream("127.0.0.1", new_port, users=[REMOTE])
    try:
        k.start()
        name = os.path.basename(seg)
        k.wait_log("%s: bad record at offset %d" % (name, bad_at))
        assert ghost not in k.cli("queue", "list").stdout.decode()
        k.cli("queue", "flush")
        deadline = time.time() + SAFETY
        while len(down.messages) < 3 and time.time() < deadline:
            time.sleep(0.05)
        subjects = sorted(re.search(rb"Subject: ([^\r]*)", m[2]).group(1).decode()
                          for m in down.messages)
        assert subjects == ["kept 0", "kept 1", "kept 2"], (subjects, k.log()[-3000:])
        k.wait_queue_empty()
        assert b"never acknowledged" not in b"".join(m[2] for m in down.messages)
        assert ghost not in k.log().replace("bad record", "")
    finally:
        down.stop()
        k.stop()


# --- a full file system -------------------------------------------------------------

@pytest.fixture
def small_fs():
    """A 4 MiB tmpfs for the spool (needs root to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    d = tempfile.mkdtemp(prefix="kurier-fullfs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", d],
                       capture_output=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip("cannot mount a tmpfs: %s" % r.stderr.decode(errors="replace"))
    yield d
    subprocess.run(["umount", "-l", d])
    os.rmdir(d)


def fill(path, chunk=65536):
    """Fill the file system of path: a file that grows until the disk is full."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * chunk)
                f.flush()
        except OSError:
            pass
    return filler


def test_full_disk_answers_451_and_loses_nothing(kurier_factory, small_fs, monkeypatch):
    monkeypatch.setenv("KURIER_TEST_SEGMENT_SIZE", "65536")
    spool = os.path.join(small_fs, "spool")
    k = kurier_factory(extra="spool_dir %s;\n" % spool)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    acked = set()
    code, _ = submit(k, "seq 0", "demo@example.test")
    assert code == 250
    acked.add(0)
    k.wait_mail("demo@example.test", 1)
    filler = fill(small_fs)
    # the current segment still has room; once it is full no new one can be made
    refused, seq = None, 1
    while refused is None and seq < 2000:
        code, text = submit(k, "seq %d" % seq, "demo@example.test")
        if code == 250:
            acked.add(seq)
        else:
            refused = (code, text)
        seq += 1
    assert refused is not None, "never refused on a full disk"
    assert refused[0] == 451 and refused[1].startswith(b"4.3.0"), refused
    assert "cannot create segment" in k.log()
    os.unlink(filler)
    # space again: new mail is accepted, and all of it is delivered
    for i in range(5):
        code, text = submit(k, "seq %d" % seq, "demo@example.test")
        assert code == 250, (code, text, k.log()[-2000:])
        acked.add(seq)
        seq += 1
    k.cli("queue", "flush")
    deadline = time.time() + SAFETY
    got = set()
    while time.time() < deadline:
        got = set()
        for p in k.maildir_new("demo@example.test"):
            m = re.search(rb"Subject: seq (\d+)", open(p, "rb").read())
            if m:
                got.add(int(m.group(1)))
        if acked <= got:
            break
        time.sleep(0.1)
    assert acked <= got, "accepted and not delivered: %s\n%s" % (
        sorted(acked - got)[:20], k.log()[-3000:])
    k.wait_queue_empty()
    k.stop()


# --- the old layout -------------------------------------------------------------------

def legacy_env(qid, rcpt, size, held=False):
    return ("id: %s\nsender: <old@remote.test>\n"
            "arrival: 1764076800 (Wed, 25 Nov 2026 13:20:00 +0000)\nsize: %d\n"
            "client: old.example [192.0.2.1]\nhelo: old.example\nproto: ESMTP\n%s"
            "rcpt: <%s> orig=<%s> state=queued attempts=1 next=0\n" % (
                qid, size, "held: 1\n" if held else "", rcpt, rcpt))


def test_old_queue_files_are_imported_and_delivered(kurier_factory):
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    q = os.path.join(spool_of(k), "queue")
    os.makedirs(q)
    inc = os.path.join(spool_of(k), "incoming")
    os.makedirs(inc)
    with open(os.path.join(inc, "CRG00000000009.msg"), "w") as f:
        f.write("never acknowledged")
    ids = ["CRG0000000000%d" % i for i in range(1, 4)]
    for i, qid in enumerate(ids):
        body = "Subject: old %d\r\n\r\nfrom before the upgrade\r\n" % i
        with open(os.path.join(q, qid + ".msg"), "w") as f:
            f.write(body)
        with open(os.path.join(q, qid + ".env"), "w") as f:
            f.write(legacy_env(qid, "demo@example.test", len(body), held=(i == 2)))
    k.start()
    k.wait_log("imported 3 message(s)")
    files = k.wait_mail("demo@example.test", 2)
    got = sorted(open(p).read().split("Subject: ")[1].split("\n")[0] for p in files)
    assert got == ["old 0", "old 1"], got
    assert not [n for n in os.listdir(q) if n.endswith((".env", ".msg"))], os.listdir(q)
    assert not os.path.exists(inc)
    # the held one kept its state and its content
    show = k.cli("queue", "show", "--body", ids[2]).stdout.decode()
    assert "held: yes" in show and "from before the upgrade" in show, show
    k.cli("queue", "release", ids[2])
    k.wait_mail("demo@example.test", 3)
    k.wait_queue_empty()


# --- the CLI and the writer lock --------------------------------------------------------

def test_cli_changes_queue_itself_only_without_daemon(kurier_factory, dead_port):
    port = dead_port.getsockname()[1]
    k = kurier_factory(extra=relay_conf(port), queue={"retry_first": "1h", "retry_max": "1h"})
    k.add_domain("example.test")
    k.start()
    a = queue_id(submit(k, "a", REMOTE))
    b = queue_id(submit(k, "b", REMOTE))
    k.wait_log("%s: to=<%s>" % (b, REMOTE))
    k.stop()
    # no daemon: the CLI writes a segment of its own under queue/writer.lock
    before = segments.files(spool_of(k))
    assert "held %s" % a in k.cli("queue", "hold", a).stdout.decode()
    assert "deleted %s" % b in k.cli("queue", "delete", b).stdout.decode()
    assert len(segments.files(spool_of(k))) == len(before) + 2  # one per command
    # while another process holds the lock (a daemon whose control socket does not
    # answer), the CLI does not write
    import fcntl
    with open(os.path.join(spool_of(k), "queue", "writer.lock")) as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        r = k.cli("queue", "release", a, check=False)
        assert r.returncode == 1 and "locked" in r.stderr.decode(), r.stderr
        # and a second daemon does not start on the same spool
        r = subprocess.run([KURIERD, "-c", k.conf], capture_output=True, timeout=SAFETY)
        assert r.returncode != 0 and b"writer.lock is locked" in r.stdout + r.stderr, r
    k.start()
    text = k.cli("queue", "list").stdout.decode()
    assert a in text and "held" in text and b not in text, text
    assert "(held)" in text or "held" in k.cli("queue", "show", a).stdout.decode()



def test_cli_reads_while_the_daemon_appends(kurier_factory, dead_port):
    """`kurier queue list` and `show` read the segments while kurierd appends to them:
    a record half written at that moment is left out, never an error or garbage."""
    import threading
    port = dead_port.getsockname()[1]
    k = kurier_factory(extra=relay_conf(port), queue={"retry_first": "1h", "retry_max": "1h"})
    k.add_domain("example.test")
    k.start()
    first = queue_id(submit(k, "first", REMOTE))
    n = 120
    sent = []

    def send():
        with smtplib.SMTP("127.0.0.1", k.port, timeout=60) as s:
            for i in range(n):
                msg = ("Subject: load %d\r\n\r\n%s" % (i, ("z" * 70 + "\r\n") * 30)).encode()
                s.sendmail("alice@example.test", [REMOTE], msg)
                sent.append(i)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    seen = lists = 0
    while t.is_alive() or lists == 0:
        r = k.cli("queue", "list", "--json", check=False)
        assert r.returncode == 0, r.stderr
        ids = [line for line in r.stdout.decode().splitlines() if line.strip()]
        # messages stay queued (their next hop is down): the count never drops
        assert len(ids) >= seen, "the listing lost messages: %d after %d" % (len(ids), seen)
        seen = len(ids)
        lists += 1
        show = k.cli("queue", "show", "--body", first, check=False)
        assert show.returncode == 0 and b"body of first" in show.stdout, show
    t.join(timeout=SAFETY)
    assert len(sent) == n
    assert lists >= 2, lists
    r = k.cli("queue", "list", "--json")
    assert len(r.stdout.decode().splitlines()) == n + 1


def test_deferred_messages_are_copied_forward_and_survive_kills(kurier_factory, dead_port,
                                                                 monkeypatch):
    """Messages that wait for days sit in the oldest segments while the rest of the
    mail flows through: they are copied forward so the old segments can go (disk use
    stays bounded), also when kill -9 lands in between, and they stay whole."""
    monkeypatch.setenv("KURIER_TEST_SEGMENT_SIZE", "16384")
    port = dead_port.getsockname()[1]
    k = kurier_factory(extra=relay_conf(port), queue={"retry_first": "1h", "retry_max": "1h"})
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    waiting = [queue_id(submit(k, "waiting %d" % i, REMOTE)) for i in range(5)]
    n = 400
    sender = Sender(k.port, n)
    kills = 0
    with sending(k, sender):
        for target in (n // 3, 2 * n // 3):
            wait_progress(k, lambda: len(sender.acked) >= target or not sender.is_alive(),
                          lambda: len(sender.acked), "sending")
            k.kill9()
            kills += 1
            k.start()
    assert not sender.pending
    wait_progress(k, lambda: len(delivered_seqs(k).keys() & sender.acked) == len(sender.acked),
                  lambda: maildir_files(k), "local delivery", interval=0.5)
    assert "copied forward to free it" in k.log(), k.log()[-3000:]
    # the segments hold about what is queued: not the whole run's 400 messages
    total = sum(os.path.getsize(p) for p in segments.files(spool_of(k)))
    assert len(segments.files(spool_of(k))) <= 8, segments.files(spool_of(k))
    for i, qid in enumerate(waiting):
        show = k.cli("queue", "show", "--body", qid).stdout.decode()
        assert "body of waiting %d" % i in show, show
    k.stop()
    k.start()
    text = k.cli("queue", "list").stdout.decode()
    assert all(q in text for q in waiting) and "5 Requests" in text, text
    assert total > 0
    log = k.log()
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log[-3000:]
