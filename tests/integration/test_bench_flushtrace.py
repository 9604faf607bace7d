#!/usr/bin/python3
"""bench/flushtrace.py, the latency scenario's flush accounting: a real process's
fdatasync calls are seen with their times, and each message is matched to the flush it
waited for (no timing asserted: only that every call was seen, in order, inside the
span its process reported)."""

import os
import subprocess
import sys

import pytest

from conftest import SAFETY

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import flushtrace  # noqa: E402

# a child that appends and flushes N times and prints each call's perf_counter() span
CHILD = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
sys.stdin.readline()  # traced from here on
for i in range(int(sys.argv[2])):
    os.write(fd, b"x" * 1300)
    t0 = time.perf_counter()
    os.fdatasync(fd)
    t1 = time.perf_counter()
    print("%.9f %.9f" % (t0, t1), flush=True)
    time.sleep(0.005)
"""


def test_fdatasync_calls_are_seen_with_their_times(tmp_path):
    if not flushtrace.tracefs() or os.geteuid() != 0:
        pytest.skip("needs root and tracefs")
    n = 12
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "f"), str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with flushtrace.FlushTrace([p.pid]) as ft:
            p.stdin.write("go\n")
            p.stdin.flush()
            spans = [tuple(float(x) for x in p.stdout.readline().split()) for _ in range(n)]
        p.wait(timeout=SAFETY)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if ft.error and "Permission" in ft.error:
        pytest.skip(ft.error)
    assert ft.error is None
    assert len(ft.flushes) == n, ft.flushes
    for (t0, t1), (s, e) in zip(spans, ft.flushes):
        assert t0 <= s <= e <= t1  # the kernel's times lie inside the caller's
    # the instance is gone: the machine's tracing is left as it was
    inst = os.path.join(flushtrace.tracefs(), "instances")
    assert not [d for d in os.listdir(inst) if d.startswith("kurier-bench-%d" % os.getpid())]
    # each "message" (the span around a call) finds its own flush; nothing is left over
    per, none = flushtrace.own_flush(spans, ft.flushes)
    assert none == 0 and len(per) == n
    for lat, flush, rest in per:
        assert 0 <= flush <= lat and abs(lat - flush - rest) < 1e-9


def test_own_flush_takes_the_last_flush_inside_the_window():
    flushes = [(0.0, 1.0), (1.5, 2.5), (3.0, 4.0), (4.2, 4.6)]
    spans = [(1.2, 2.6),  # (1.5, 2.5) only
             (2.8, 4.7),  # two inside: the later one, (4.2, 4.6), is its own
             (0.5, 1.2),  # (0.0, 1.0) began before the message: not its own
             (5.0, 6.0)]  # none
    per, none = flushtrace.own_flush(spans, flushes)
    assert none == 2
    assert [(round(a, 6), round(b, 6)) for a, b, _ in per] == [(1.4, 1.0), (1.9, 0.4)]


def test_parse_pairs_enter_and_exit_per_thread():
    text = ("# tracer: nop\n"
            "   kurierd-101  [000] ..... 10.000100: sys_fdatasync(fd: 7)\n"
            "   kurierd-102  [001] ..... 10.000200: sys_fsync(fd: 9)\n"
            "   kurierd-101  [000] ..... 10.000900: sys_fdatasync -> 0x0\n"
            " some-thing-7-103 [001] ..... 10.001000: sys_fdatasync(fd: 3)\n"
            "   kurierd-102  [001] ..... 10.002000: sys_fsync -> 0x0\n")
    got = flushtrace.parse(text)
    assert got == [(10.0001, 10.0009), (10.0002, 10.002)]


def test_an_instance_that_is_there_is_left_alone():
    """An ftrace instance of that name that is already there (another run's) is not
    used and not removed: the trace reports why it has nothing."""
    if not flushtrace.tracefs() or os.geteuid() != 0:
        pytest.skip("needs root and tracefs")
    path = os.path.join(flushtrace.tracefs(), "instances", "kurier-bench-%d" % os.getpid())
    os.mkdir(path)
    try:
        with flushtrace.FlushTrace([os.getpid()]) as ft:
            pass
        assert ft.error and "File exists" in ft.error, ft.error
        assert ft.flushes == [] and os.path.isdir(path)
    finally:
        os.rmdir(path)
