#!/usr/bin/python3
"""profile_sessions.py: kurierd relaying N messages from S concurrent smtp-source
sessions (bench.py's client model) to smtp-sink, under strace -f -c or callgrind, to
compare counts per message at 20 and 100 sessions (bench/PROFILE.md, "100 sessions").

  bench/profile_sessions.py --build build --sessions 100 -n 2000 --tool strace
  bench/profile_sessions.py --build build --sessions 100 -n 500 --tool callgrind

Count-bounded; no timing is read. Run as root (smtp-sink -u postfix). Prints the
syscalls per message (strace) or the instructions per message since the daemon
started (callgrind: from the start until it stops, so compare runs of equal n)."""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import mta  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tool", choices=("strace", "trace", "callgrind", "none"), default="strace")
    ap.add_argument("--out", default=None, help="keep the tool's output here")
    a = ap.parse_args()
    bindir = os.path.abspath(a.build)
    base = tempfile.mkdtemp(prefix="kurier-prof-")
    os.chmod(base, 0o755)
    out = os.path.join(base, "%s.out" % a.tool)
    sink = mta.Sink(base)
    m = mta.Kurier(base, bindir, relay_port=sink.port)
    tracer = None
    try:
        if a.tool == "callgrind":
            wrap = os.path.join(base, "kurierd-vg")
            with open(wrap, "w") as f:
                f.write("#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s "
                        "%s \"$@\"\n" % (out, m.kurierd))
            os.chmod(wrap, 0o755)
            with open(out, "w"):  # made by root at the start, written after the drop
                pass
            os.chmod(out, 0o666)
            os.chmod(base, 0o777)  # the daemon writes the profile after its privilege drop
            m.kurierd = wrap
        m.start()
        pid = m.proc.pid
        if a.tool == "callgrind":
            # no callgrind_control -z: it attaches through vgdb and stalled the
            # daemon here; the counts include the start (compare runs of equal n)
            time.sleep(1)
        elif a.tool in ("strace", "trace"):  # trace: every call, for reading
            opt = ["-c"] if a.tool == "strace" else ["-tt", "-yy"]
            tracer = subprocess.Popen(["strace", "-f"] + opt + ["-o", out, "-p", str(pid)],
                                      stderr=subprocess.PIPE)
            tracer.stderr.readline()  # "strace: Process N attached with M threads"
        n0 = sink.count()
        fl0 = bench.disk_flushes(base)
        dt, failures = bench.run_sources(m.port, a.n, a.sessions, a.size,
                                         bench.RCPT["relay"], base)
        got, complete, _ = bench.wait_delivered(sink.count, n0 + a.n, 300, 30)
        fl1 = bench.disk_flushes(base)
        if tracer:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=60)
        m.stop()
        print("sessions %d, %d messages, delivered %d%s, client failures %d" % (
            a.sessions, a.n, got - n0, "" if complete else " (incomplete)", len(failures)))
        if fl0 is not None and fl1 is not None:  # the whole disk's: other users count too
            print("disk flushes per message (/proc/diskstats): %.3f" % ((fl1 - fl0) / a.n))
        if a.tool == "strace":
            with open(out) as f:
                text = f.read()
            total = 0
            rows = []
            for line in text.splitlines():
                p = line.split()
                if len(p) >= 5 and p[-1] != "total" and re.match(r"^[\d.]+$", p[0]):
                    calls = int(p[3])
                    rows.append((calls, p[-1]))
                    total += calls
            rows.sort(reverse=True)
            print("syscalls per message: %.1f" % (total / a.n))
            for calls, name in rows[:14]:
                print("  %-16s %7.2f" % (name, calls / a.n))
        elif a.tool == "callgrind":
            r = subprocess.run(["callgrind_annotate", "--inclusive=no", out],
                               capture_output=True, text=True)
            mt = re.search(r"^\s*([\d,]+).*PROGRAM TOTALS", r.stdout, re.M)
            if mt:
                ir = int(mt.group(1).replace(",", ""))
                print("instructions per message: %d" % (ir / a.n))
            print("\n".join(r.stdout.splitlines()[:60]))
        if a.out:
            shutil.copy(out, a.out)
            print("output: %s" % a.out)
    finally:
        if tracer and tracer.poll() is None:
            tracer.kill()
        m.cleanup()
        sink.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
