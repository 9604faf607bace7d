#!/usr/bin/python3
"""Durability under kill -9: while a client sends many messages, the daemon is killed
with SIGKILL at random moments and restarted. Every message that got 250 after its
DATA must end up in the Maildir (a message may arrive twice: the client retries what
it did not see acknowledged, and a crash between delivery and the recipient's state
write delivers again; duplicates are counted and printed, not failed)."""

import os
import random
import re
import smtplib
import threading
import time

SEED = 20261125
KILLS = 5


def message_count():
    # 2000 fits in well under a minute of sending even on the ASan build
    return int(os.environ.get("KURIER_CRASH_MESSAGES") or 2000)


def message(seq):
    return ("From: load@remote.test\r\nTo: demo@example.test\r\n"
            "Subject: crash test %d\r\nX-Seq: %d\r\n\r\n"
            "message %d\r\n%s\r\nend-of-message %d\r\n" % (
                seq, seq, seq, "x" * 200, seq)).encode()


class Sender(threading.Thread):
    """Sends seq 0..n-1, a few per connection; records each seq that got 250 for its
    DATA; on any error puts the unacknowledged seqs back and tries them again."""

    def __init__(self, port, n, deadline):
        super().__init__(daemon=True)
        self.port = port
        self.pending = list(range(n))
        self.acked = set()
        self.attempts = 0
        self.errors = 0
        self.deadline = deadline
        self.stop = threading.Event()
        self.rng = random.Random(SEED + 1)

    def run(self):
        while self.pending and not self.stop.is_set() and time.time() < self.deadline:
            batch = self.pending[:self.rng.randint(1, 5)]
            done = []
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                    for seq in batch:
                        self.attempts += 1
                        s.sendmail("load@remote.test", ["demo@example.test"], message(seq))
                        # sendmail returned: the DATA reply was 250
                        self.acked.add(seq)
                        done.append(seq)
            except (OSError, smtplib.SMTPException, EOFError):
                self.errors += 1
                time.sleep(0.02)
            for seq in done:
                self.pending.remove(seq)


def delivered_seqs(k):
    """{seq: number of Maildir files} over new/ and cur/ of demo@example.test; also
    checks each file is whole (its trailer is there)."""
    counts = {}
    base = os.path.join(k.maildir_root, "example.test", "demo", "Maildir")
    for sub in ("new", "cur"):
        d = os.path.join(base, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            m = re.search(rb"^X-Seq: (\d+)$", data, re.M)
            assert m, "Maildir file without X-Seq: %s %r" % (name, data[:300])
            seq = int(m.group(1))
            assert data.rstrip(b"\n").endswith(b"end-of-message %d" % seq), (
                "torn message in %s: %r" % (name, data[-300:]))
            counts[seq] = counts.get(seq, 0) + 1
    return counts


def queue_empty(k):
    r = k.cli("queue", "list", check=False)
    return r.returncode == 0 and "empty" in r.stdout.decode().lower()


def test_kill9_loses_no_acknowledged_message(kurier_factory):
    n = message_count()
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    rng = random.Random(SEED)
    sender = Sender(k.port, n, deadline=time.time() + 150)
    sender.start()
    kills = 0
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.5))
            if not sender.is_alive():
                break
            k.kill9()
            kills += 1
            k.start()
        sender.join(timeout=160)
    finally:
        sender.stop.set()
        sender.join(timeout=30)
    assert not sender.is_alive()
    # one more crash and restart after the last message, then let the queue drain
    k.kill9()
    k.start()
    deadline = time.time() + 60
    while time.time() < deadline and not queue_empty(k):
        time.sleep(0.5)
    queue = k.cli("queue", "list", check=False).stdout.decode()
    counts = delivered_seqs(k)
    lost = sorted(sender.acked - set(counts))
    dups = sorted(s for s, c in counts.items() if c > 1)
    print("messages %d, acknowledged %d, attempts %d, client errors %d, kills %d, "
          "delivered distinct %d, files %d, duplicates %d %s" % (
              n, len(sender.acked), sender.attempts, sender.errors, kills, len(counts),
              sum(counts.values()), len(dups), dups[:20]))
    assert kills >= 2, "the daemon was killed only %d times" % kills
    assert not sender.pending, "%d messages never got 250 within the time limit" % len(
        sender.pending)
    assert not lost, "%d acknowledged messages lost: %s\nqueue:\n%s\nlog:\n%s" % (
        len(lost), lost[:50], queue[-2000:], k.log()[-3000:])
    assert set(counts) <= set(range(n))
    assert "empty" in queue.lower(), queue[-2000:]
    log = k.log()
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log[-3000:]
