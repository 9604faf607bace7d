"""The disk flushes (fsync, fdatasync) of given threads, with their start and end times,
from the kernel's syscall trace points: an ftrace instance of its own under tracefs
(its own buffer and settings; the global trace is not touched), clock "mono", which is
CLOCK_MONOTONIC as time.perf_counter() reads it. No process is stopped or slowed as
strace would: the kernel writes two records per call into a ring buffer.

    with FlushTrace(tids) as ft:   # and the processes they start from then on
        ...
    ft.error    -> None, or why nothing was traced (not root, no tracefs, ...)
    ft.flushes  -> [(start, end), ...] sorted by end, in perf_counter() seconds
"""
import bisect
import os
import re
import shutil

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
CALLS = ("fsync", "fdatasync")
# "kurierd-1234 [001] ..... 54731.728924: sys_fdatasync(fd: 3)" (enter), then
# "... 54731.729511: sys_fdatasync -> 0x0" (exit)
LINE = re.compile(r"^\s*.+-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): sys_(\w+)(\(| -> )")


def tracefs():
    for d in TRACEFS:
        if os.path.isdir(os.path.join(d, "instances")):
            return d
    return None


class FlushTrace:
    def __init__(self, tids):
        self.tids = [int(t) for t in tids]
        self.flushes = []
        self.dir = None
        self.error = None

    def _w(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def start(self):
        root = tracefs()
        if not root or os.geteuid() != 0:
            self.error = "no tracefs (needs root and /sys/kernel/tracing)"
            return self
        path = os.path.join(root, "instances", "kurier-bench-%d" % os.getpid())
        try:
            os.mkdir(path)
        except OSError as e:  # not ours to remove (or to use) when it was there
            self.error = "tracefs: %s" % e
            return self
        self.dir = path
        try:
            self._w("trace_clock", "mono")
            self._w("buffer_size_kb", "4096")
            self._w("set_event_pid", " ".join(str(t) for t in self.tids))
            self._w("options/event-fork", "1")  # and what they start (Postfix's cleanup)
            for c in CALLS:
                for kind in ("enter", "exit"):
                    self._w("events/syscalls/sys_%s_%s/enable" % (kind, c), "1")
            self._w("tracing_on", "1")
        except OSError as e:
            self.error = "tracefs: %s" % e
            self.stop()
        return self

    def stop(self):
        if not self.dir:
            return
        try:
            self._w("tracing_on", "0")
            with open(os.path.join(self.dir, "trace")) as f:
                text = f.read()
            if not self.error:
                self.flushes = parse(text)
        except OSError as e:
            self.error = self.error or "tracefs: %s" % e
        finally:
            try:
                for c in CALLS:
                    for kind in ("enter", "exit"):
                        self._w("events/syscalls/sys_%s_%s/enable" % (kind, c), "0")
            except OSError:
                pass
            try:
                os.rmdir(self.dir)  # an instance is removed with rmdir, files and all
            except OSError:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def parse(text):
    """[(start, end)] of every completed call in the trace text, by end time."""
    open_calls, out = {}, []
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or m.group(3) not in CALLS:
            continue
        tid, t = int(m.group(1)), float(m.group(2))
        if m.group(4) == "(":
            open_calls[tid] = t
        elif tid in open_calls:
            out.append((open_calls.pop(tid), t))
    out.sort(key=lambda x: x[1])
    return out


def own_flush(spans, flushes):
    """Per message (t0 = end of DATA sent, t1 = reply read): the flush it waited for,
    the last one that began after t0 and ended before t1, and what the rest of the
    wait was: [(latency, flush, rest)] for the messages with such a flush, and how many
    had none."""
    ends = [f[1] for f in flushes]
    out, none = [], 0
    for t0, t1 in spans:
        k = bisect.bisect_right(ends, t1) - 1
        own = None
        while k >= 0 and flushes[k][1] >= t0:
            if flushes[k][0] >= t0:
                own = flushes[k]
                break
            k -= 1
        if own is None:
            none += 1
            continue
        d = own[1] - own[0]
        out.append((t1 - t0, d, (t1 - t0) - d))
    return out, none
