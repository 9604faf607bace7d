#!/usr/bin/python3
"""Queue hand-over between two nodes (issue 18 item 4, docs/queue.md "Moving the queue
to another node"): `kurier queue export` on node A writes its queued messages as a
stream, `kurier queue import` on node B queues them through B's maildrop, with their
envelopes (recipient states, DSN parameters, arrival, attempts, held) and content
unchanged; B then delivers them to Postfix's smtp-sink. A stream that was cut short or
damaged queues nothing; importing the same stream twice queues nothing twice; a
transfer file from an ordinary user is refused by the pickup."""

import json
import os
import re
import smtplib
import subprocess
import threading
import time

import pytest

import peers
from conftest import KURIER, SAFETY, free_port

DSN_SENDER = "demo@example.test"


def node(kurier_factory, relay_port, queue=None):
    """A kurierd relaying for 127/8 to the smarthost 127.0.0.1:relay_port."""
    q = {"retry_first": "1h", "retry_max": "1h"}
    q.update(queue or {})
    k = kurier_factory(queue=q, extra="relay {\n    trusted_networks 127.0.0.0/8;\n}\n"
                                      "relay_host 127.0.0.1:%d;\n" % relay_port)
    k.add_domain("example.test")
    return k


def message(i):
    return ("From: demo@example.test\r\nTo: r%d@remote.test\r\nSubject: hand-over %d\r\n"
            "Message-ID: <handover.%d@example.test>\r\n\r\nbody of message %d\r\n"
            ".a line with a leading dot\r\n" % (i, i, i, i))


def submit(k, first, count):
    """Queue messages first..first+count-1 on k over one SMTP connection, each with DSN
    parameters: RET, ENVID, and per recipient NOTIFY and ORCPT."""
    with smtplib.SMTP("127.0.0.1", k.port, timeout=60) as s:
        for i in range(first, first + count):
            rcpts = ["r%d@remote.test" % i] + (["s%d@remote.test" % i] if i % 10 == 0 else [])
            s.ehlo("client.test")
            s.mail(DSN_SENDER, ["RET=%s" % ("FULL" if i % 2 else "HDRS"), "ENVID=env%d" % i])
            for r in rcpts:
                code, _ = s.rcpt(r, ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig-%s" % r])
                assert code == 250
            code, _ = s.data(message(i))
            assert code == 250


def submit_many(k, count, threads=4):
    per = count // threads
    errors = []

    def run(n):
        try:
            submit(k, n * per, per)
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def queue_ids(k):
    r = k.cli("queue", "list", "--json")
    return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]


def wait_deferred(k, count):
    """Wait until count messages are queued and each has had its (failed) first try."""
    deadline = time.time() + SAFETY * 3
    while time.time() < deadline:
        q = queue_ids(k)
        if len(q) == count and all(r["attempts"] >= 1 for m in q for r in m["recipients"]):
            return q
        time.sleep(0.5)
    raise AssertionError("not %d deferred messages: %d\n%s" % (count, len(queue_ids(k)),
                                                               k.log()[-3000:]))


def parse_stream(data):
    """The stream as docs/queue.md describes it: {old ID: (envelope text, content)}."""
    lines = data.split(b"\n", 1)
    assert lines[0].startswith(b"kurier-queue-stream 1 node="), lines[0]
    rest, out = lines[1], {}
    while not rest.startswith(b"end "):
        head, rest = rest.split(b"\n", 1)
        m = re.fullmatch(rb"message (\w{14}) envelope=(\d+) content=(\d+)", head)
        assert m, head
        el, cl = int(m.group(2)), int(m.group(3))
        env, content, rest = rest[:el], rest[el:el + cl], rest[el + cl:]
        assert re.match(rb"sha256 [0-9a-f]{64}\n", rest), rest[:80]
        rest = rest[72:]
        out[m.group(1).decode()] = (env.decode(), content)
    assert re.fullmatch(rb"end count=%d sha256=[0-9a-f]{64}\n" % len(out), rest), rest
    return out


def sink_messages(dump, count, timeout=SAFETY, k=None):
    """smtp-sink's files once count are whole (each ends with an empty line)."""
    deadline = time.time() + timeout
    files = []
    while time.time() < deadline:
        files = []
        for n in sorted(os.listdir(dump)):
            with open(os.path.join(dump, n), "rb") as f:
                files.append(f.read().decode())
        if len(files) >= count and all(t.endswith("\n\n") for t in files):
            return files
        time.sleep(0.2)
    raise AssertionError("smtp-sink has %d of %d messages%s" % (
        len(files), count, "; log:\n" + k.log()[-5000:] if k else ""))


def sink_content(text):
    """The message as the sink got it: after its X- lines and its own Received: field
    (three lines), line ends LF, the sink's final empty line removed."""
    lines = text.split("\n")
    i = 0
    while lines[i].startswith("X-"):
        i += 1
    assert lines[i].startswith("Received: from") and lines[i + 1].startswith("\tby smtp-sink")
    return "\n".join(lines[i + 3:])[:-1]


def pipe(a, b, *export_args):
    """`kurier queue export ARGS | tee stream | kurier queue import` from node a to
    node b; returns (export, import) results and the stream's bytes."""
    stream = os.path.join(a.dir, "stream")
    cmd = ("set -o pipefail; %s -c %s queue export %s 2>%s/export.err | tee %s | "
           "%s -c %s queue import" % (KURIER, a.conf, " ".join(export_args), a.dir, stream,
                                      KURIER, b.conf))
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=SAFETY * 3)
    with open(os.path.join(a.dir, "export.err")) as f:
        err = f.read()
    with open(stream, "rb") as f:
        return r, err, f.read()


def test_1000_messages_move_with_their_envelopes(kurier_factory):
    sink_port = free_port()
    a = node(kurier_factory, free_port())  # its smarthost does not answer: all deferred
    b = node(kurier_factory, sink_port)
    a.start()
    b.start()
    submit_many(a, 1000)
    queued = wait_deferred(a, 1000)
    held = [m["id"] for m in queued[:2]]
    a_arrival = {m["id"]: m["arrival"] for m in queued}
    for qid in held:
        a.cli("queue", "hold", qid)

    dump = os.path.join(b.dir, "dump")  # smtp-sink (user postfix) must reach it
    with peers.smtp_sink(dump, "127.0.0.1", sink_port):
        r, err, data = pipe(a, b, "--all", "--remove")
        assert r.returncode == 0, (r.stdout, r.stderr, err)
        assert "exported 1000 messages" in err and "removed 1000 exported messages" in err, err
        assert "imported 1000 messages from node mx.example.test" in r.stdout.decode()
        assert a.queue_empty(), a.cli("queue", "list").stdout
        exported = parse_stream(data)
        assert len(exported) == 1000

        # the held ones stay held on B, with their tries and DSN fields; then released
        log = b.wait_log_count("imported from mx.example.test queue ID", 1000)
        new_of = dict(re.findall(r"(\w{14}): uid=\d+ from=<[^>]*> imported from "
                                 r"mx\.example\.test queue ID (\w{14})", log)[i][::-1]
                      for i in range(1000))
        assert set(new_of) == set(exported)
        for qid in held:
            show = json.loads(b.cli("queue", "show", "--json", new_of[qid]).stdout)
            assert show["held"] is True and show["envid"]
            rc = show["recipients"][0]
            assert rc["attempts"] == 1 and rc["state"] == "queued"
            assert rc["orcpt"] == "rfc822;orig-" + rc["address"]
            arrival = int(re.search(r"^arrival: (\d+)", exported[qid][0], re.M).group(1))
            assert show["arrival"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(arrival))
            assert a_arrival[qid] == show["arrival"]  # as it was on A
        # the others go out at once (imported recipients are due now), these on release
        for qid in held:
            b.cli("queue", "release", new_of[qid])
        files = sink_messages(dump, 1000, timeout=SAFETY * 3, k=b)
        b.wait_queue_empty(timeout=SAFETY * 3)
    files = sink_messages(dump, 1000)
    assert len(files) == 1000  # each once
    by_envid = {}
    for f in files:
        m = re.search(r"^X-Mail-Args: <%s> .*ENVID=env(\d+)" % DSN_SENDER, f, re.M)
        assert m, f[:400]
        assert m.group(1) not in by_envid
        by_envid[m.group(1)] = f
    assert sorted(by_envid, key=int) == [str(i) for i in range(1000)]
    contents = {}
    for env, content in exported.values():
        envid = re.search(r"^envid: env(\d+)$", env, re.M).group(1)
        contents[envid] = content.decode()
    for i, f in by_envid.items():
        n = int(i)
        ret = "RET=FULL" if n % 2 else "RET=HDRS"
        assert re.search(r"^X-Mail-Args: <%s> .*%s" % (DSN_SENDER, ret), f, re.M), f[:400]
        rcpts = ["r%d@remote.test" % n] + (["s%d@remote.test" % n] if n % 10 == 0 else [])
        for rc in rcpts:
            assert "X-Rcpt-Args: <%s> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig-%s\n" % (
                rc, rc) in f, f[:600]
        assert sink_content(f) == contents[i].replace("\r\n", "\n"), (i, f)
        assert "body of message %d\n..a line" not in f and "\n.a line with" in f
    # the same stream again: every message was imported before, nothing is queued
    r = b.cli("queue", "import", input=data)
    assert "imported 0 messages from node mx.example.test, skipped 1000 imported before" in \
        r.stdout.decode()
    assert b.queue_empty()
    b.stop_clean()
    a.stop_clean()


def test_import_while_stopped_and_twice(kurier_factory):
    """Export of given IDs to a file (the messages stay on A), imported twice into B
    while B is stopped: the second import queues nothing; B delivers each once when it
    starts."""
    sink_port = free_port()
    a = node(kurier_factory, free_port())
    b = node(kurier_factory, sink_port)
    a.start()
    b.start()  # its spool exists from here on
    b.stop()
    submit(a, 0, 3)
    ids = [m["id"] for m in wait_deferred(a, 3)]
    stream = os.path.join(a.dir, "two.stream")
    with open(stream, "wb") as f:
        r = subprocess.run([KURIER, "-c", a.conf, "queue", "export", ids[0], ids[2]], stdout=f,
                           stderr=subprocess.PIPE, timeout=SAFETY)
    assert r.returncode == 0, r.stderr
    assert b"exported 2 messages" in r.stderr
    assert len(queue_ids(a)) == 3  # without --remove nothing leaves A
    with open(stream, "rb") as f:
        r = b.cli("queue", "import", input=f.read())
    out = r.stdout.decode()
    assert "imported 2 messages from node mx.example.test" in out
    assert "kurierd is not running; it queues them when it starts" in out
    with open(stream, "rb") as f:
        r = b.cli("queue", "import", input=f.read())
    assert "imported 0 messages from node mx.example.test, skipped 2 imported before" in \
        r.stdout.decode()

    dump = os.path.join(b.dir, "dump")  # smtp-sink (user postfix) must reach it
    with peers.smtp_sink(dump, "127.0.0.1", sink_port):
        b.start()
        files = sink_messages(dump, 2, k=b)
        b.wait_queue_empty()
        log = b.log()
        for qid in (ids[0], ids[2]):
            assert log.count("imported from mx.example.test queue ID %s" % qid) == 1
        assert ids[1] not in log
    assert len(os.listdir(dump)) == 2
    assert sorted(re.search(r"ENVID=env(\d)", f).group(1) for f in files) == ["0", "2"]
    # the IDs given must all exist, before anything is written
    r = a.cli("queue", "export", ids[0], "CR8STWVVGH804F", check=False)
    assert r.returncode == 1 and r.stdout == b""
    assert b"no such message CR8STWVVGH804F" in r.stderr
    r = a.cli("queue", "export", check=False)
    assert r.returncode == 2
    r = a.cli("queue", "export", "--all", ids[0], check=False)
    assert r.returncode == 2
    b.stop_clean()
    a.stop_clean()
    # --remove with A stopped: the CLI becomes the spool's writer and removes them itself
    with open(stream, "wb") as f:
        r = subprocess.run([KURIER, "-c", a.conf, "queue", "export", "--all", "--remove"],
                           stdout=f, stderr=subprocess.PIPE, timeout=SAFETY)
    assert r.returncode == 0, r.stderr
    assert b"exported 3 messages" in r.stderr and b"removed 3 exported messages" in r.stderr
    assert queue_ids(a) == []
    with open(stream, "rb") as f:
        assert len(parse_stream(f.read())) == 3


def maildrop(k):
    return os.path.join(k.dir, "var", "spool", "maildrop")


@pytest.fixture
def three(kurier_factory):
    """Node A with 3 deferred messages and their export stream; node B running."""
    a = node(kurier_factory, free_port())
    b = node(kurier_factory, free_port())
    a.start()
    b.start()
    submit(a, 0, 3)
    ids = [m["id"] for m in wait_deferred(a, 3)]
    r = a.cli("queue", "export", "--all")
    yield a, b, ids, r.stdout
    b.stop_clean()
    a.stop_clean()


def import_fails(b, data, *expect):
    r = b.cli("queue", "import", input=data, check=False)
    err = r.stderr.decode()
    assert r.returncode == 1, (r.stdout, err)
    assert "nothing was imported" in err, err
    for e in expect:
        assert re.search(e, err), (e, err)
    assert os.listdir(maildrop(b)) == []  # nothing staged is left behind
    return err


def test_damaged_streams_queue_nothing(three):
    a, b, ids, data = three
    msgs = list(re.finditer(rb"^message (\w{14}) envelope=(\d+) content=(\d+)\n", data, re.M))
    assert [m.group(1).decode() for m in msgs] == ids
    second = msgs[1]
    content_at = second.end() + int(second.group(2))
    # cut short inside the second message's content
    import_fails(b, data[:content_at + 10],
                 r"message 2 \(%s\) at offset %d: the stream is cut short inside the content"
                 % (ids[1], second.start()))
    # cut short before the end line
    end = data.rindex(b"end count=")
    import_fails(b, data[:end], r"cut short after 3 messages \(no end line\)")
    # one byte of the second message's content changed
    bad = bytearray(data)
    bad[content_at + 5] ^= 0x20
    import_fails(b, bytes(bad), r"message 2 \(%s\) at offset %d: checksum mismatch"
                 % (ids[1], second.start()))
    # the end line's count
    import_fails(b, data.replace(b"end count=3", b"end count=2"),
                 r"the end line counts 2 messages, the stream has 3")
    import_fails(b, data + b"x", r"data after the end line")
    import_fails(b, b"", r"empty stream")
    import_fails(b, b"From: someone\n\nnot a stream\n", r"not a kurier queue stream")
    # none of that was remembered or queued: the whole stream still imports, once
    assert b.queue_empty()
    r = b.cli("queue", "import", input=data)
    assert "imported 3 messages" in r.stdout.decode()
    b.wait_log_count("imported from mx.example.test queue ID", 3)


def test_transfer_file_from_an_ordinary_user_is_refused(three):
    """Any local user may write into the maildrop (sendmail); a transfer file carries a
    whole envelope (trusted sender, states), so only root's or kurierd's count."""
    a, b, ids, data = three
    msgs = list(re.finditer(rb"^message (\w{14}) envelope=(\d+) content=(\d+)\n", data, re.M))
    m = msgs[0]
    env = data[m.end():m.end() + int(m.group(2))]
    content = data[m.end() + int(m.group(2)):m.end() + int(m.group(2)) + int(m.group(3))]
    text = b"transfer: forged.example %s\n%s\n%s" % (m.group(1), env, content)
    path = os.path.join(maildrop(b), "CR8STWVVGH804F.forged")
    subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-c", "cat > " + path], input=text,
                   check=True, timeout=SAFETY)
    b.wait_log("bad maildrop file CR8STWVVGH804F.forged")
    assert "only root and kurierd's user may import" in b.log()
    assert b.queue_empty()
    assert os.path.exists(os.path.join(maildrop(b), ".bad-CR8STWVVGH804F.forged"))


def test_remove_only_after_the_stream_is_out(three):
    """export --remove deletes nothing when the stream could not be written whole (a
    full disk: /dev/full) or its reader went away before reading all of it."""
    a, b, ids, data = three
    with open("/dev/full", "wb") as full:
        r = subprocess.run([KURIER, "-c", a.conf, "queue", "export", "--all", "--remove"],
                           stdout=full, stderr=subprocess.PIPE, timeout=SAFETY)
    assert r.returncode == 1
    assert b"cannot write the stream: No space left on device; nothing was removed" in r.stderr
    # a reader that takes 100 bytes and leaves: the stream fitted into the pipe, so no
    # write failed, but the exporter sees the bytes left unread
    r = subprocess.run(["bash", "-c", "set -o pipefail; %s -c %s queue export --all --remove "
                        "| dd bs=100 count=1 status=none of=/dev/null" % (KURIER, a.conf)],
                       capture_output=True, timeout=SAFETY)
    assert r.returncode == 1
    assert b"the reader of the stream went away before it read all of it; nothing was " \
        b"removed" in r.stderr, r.stderr
    assert sorted(m["id"] for m in queue_ids(a)) == sorted(ids)
