#!/usr/bin/python3
"""bench.py: kurier against Postfix on this machine, in the same run, alternating
kurier, Postfix, kurier, Postfix... (issue 5). Writes a Markdown report.

  bench/bench.py [--smoke] [--build DIR] [--out FILE] [--pairs N]

Everything runs on loopback, in temp folders, bounded in time and count; every process
started is stopped by its PID. No timing is asserted: the exit status is 1 only when
the harness itself broke (a scenario delivered nothing, an MTA did not start)."""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clients  # noqa: E402
import flushtrace  # noqa: E402
import mta  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SENDER = "bench@client.test"
RCPT = {"relay": "rcpt@remote.test", "local": "bench@example.test"}
POSTFIX_IDLE_PROCS = 1000  # smtpd processes Postfix may run in the idle scenario

FULL = {
    "pairs": 3,
    "throughput": [(kind, size, sess, 2000 if size <= 1024 else 600)
                   for kind in ("relay", "local") for size in (1024, 102400)
                   for sess in (20, 100)],
    # STARTTLS relay: (sessions, N, resume: offer the last session's ticket)
    "tls": [(20, 1000, True), (100, 1000, True), (20, 1000, False)],
    "idle": [1000, 10000],
    "latency": {"sessions": 10, "total": 1000, "rate": 100, "size": 1024},
    "durability": 300,
    "fsync_seconds": 3.0,
    # bench/spoolproto.c: messages per run, sizes, batch sizes, repeats (median)
    "spoolproto": ["-n", "1000", "-s", "1024,102400", "-b", "1,10,50", "-r", "3"],
    "e2e_timeout": 180,
    "stall": 15,
}
# every scenario end to end on both MTAs, with the fewest messages that still do each
# one's work (several per session, resumed TLS sessions); make check runs it
SMOKE = {
    "pairs": 1,
    "throughput": [("relay", 1024, 10, 50), ("local", 1024, 10, 50),
                   ("local", 102400, 10, 20)],
    "tls": [(10, 20, True), (10, 10, False)],
    "idle": [50],
    "latency": {"sessions": 5, "total": 25, "rate": 50, "size": 1024},
    "durability": 20,
    "fsync_seconds": 0.5,
    "spoolproto": ["-n", "50", "-s", "1024", "-b", "1,10", "-r", "1"],
    "e2e_timeout": 30,
    "stall": 5,
}


def log(msg):
    sys.stderr.write("bench %s: %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class HarnessError(Exception):
    pass


# --- machine ---------------------------------------------------------------------------

def sh(argv):
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).stdout.decode(
            errors="replace").strip()
    except Exception:
        return ""


def fsync_rate(base, seconds):
    """write(4 KiB) + fsync in a loop on the spool's filesystem: (fsyncs/s, mean ms,
    p99 ms of one write + fsync)."""
    path = os.path.join(base, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n, t0, buf, each = 0, time.perf_counter(), b"x" * 4096, []
    try:
        while time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            os.pwrite(fd, buf, (n % 256) * 4096)
            os.fsync(fd)
            each.append(time.perf_counter() - t)
            n += 1
    finally:
        os.close(fd)
        os.unlink(path)
    dt = time.perf_counter() - t0
    each.sort()
    p99 = 1000.0 * each[min(len(each) - 1, len(each) * 99 // 100)] if each else 0.0
    return n / dt, 1000.0 * dt / max(n, 1), p99


def fsync_paced(base, rate, n):
    """The spool's pattern at the latency scenario's pace: append 1,300 bytes to a
    preallocated file and fdatasync, rate times a second, n times. (p50 ms, p99 ms) of
    one append + flush. A disk (or a VM's) flush costs more when it comes alone than
    back to back as in fsync_rate()."""
    path = os.path.join(base, "fsync-paced")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    each, buf = [], b"x" * 1300
    try:
        os.posix_fallocate(fd, 0, n * len(buf) + 4096)
        t0 = time.perf_counter()
        for i in range(n):
            due = t0 + i / float(rate)
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            t = time.perf_counter()
            os.pwrite(fd, buf, i * len(buf))
            os.fdatasync(fd)
            each.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return 1000.0 * pct(each, 50), 1000.0 * pct(each, 99)


def fs_of(path):
    best = ("?", "?", "?")
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if (path + "/").startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best[1]):
                best = (dev, mnt, typ)
    return best


def disk_flushes(path):
    """Completed flush requests of the disk holding path (field 19 of /proc/diskstats
    counting major, minor and name), or None."""
    st = os.stat(path)
    maj, mnr = os.major(st.st_dev), os.minor(st.st_dev)
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if int(p[0]) == maj and int(p[1]) == mnr and len(p) >= 19:
                return int(p[18])  # field 19 = index 18
    return None


def listen_overflows():
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for i in range(0, len(lines) - 1, 2):
        if lines[i].startswith("TcpExt:"):
            keys, vals = lines[i].split()[1:], lines[i + 1].split()[1:]
            return int(dict(zip(keys, vals)).get("ListenOverflows", 0))
    return 0


def machine(base, cfg):
    m = {}
    m["cores"] = os.cpu_count()
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    m["cpu"] = model
    with open("/proc/meminfo") as f:
        m["mem_gib"] = int(f.readline().split()[1]) / 1048576.0
    m["kernel"] = platform.release()
    m["fs"] = fs_of(base)
    m["fsync_per_s"], m["fsync_ms"], m["fsync_p99_ms"] = fsync_rate(base, cfg["fsync_seconds"])
    L = cfg["latency"]
    m["paced_rate"] = L["rate"]
    m["paced_p50_ms"], m["paced_p99_ms"] = fsync_paced(base, L["rate"], L["total"] // 2)
    # postconf needs /etc/postfix/main.cf, which a machine with only the package's
    # binaries in use (the bench runs private instances) may not have
    m["postfix"] = (sh(["postconf", "-h", "mail_version"]) or
                    sh(["dpkg-query", "-W", "-f=${Version}", "postfix"]))
    rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "src"])
    m["kurier"] = rev + (" + uncommitted changes in src/" if dirty else "")
    m["cc"] = sh(["cc", "--version"]).splitlines()[0] if sh(["cc", "--version"]) else "?"
    m["python"] = platform.python_version()
    m["os"] = ""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    m["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return m


# --- runs ------------------------------------------------------------------------------

class Ctx:
    def __init__(self, args, cfg, base, bindir, logdir):
        self.args, self.cfg, self.base, self.bindir, self.logdir = (args, cfg, base, bindir,
                                                                   logdir)
        self.relay_ok = {"kurier": True, "postfix": True}
        self.notes = []
        self.configs = {}


def make_mta(ctx, name, relay_port=None, **kw):
    if name == "kurier":
        m = mta.Kurier(ctx.base, ctx.bindir, relay_port=relay_port, **kw.get("k", {}))
        ctx.configs.setdefault("kurier", m.conf_text)
    else:
        m = mta.Postfix(ctx.base, relay_port=relay_port, **kw.get("p", {}))
        if "postfix" not in ctx.configs:
            with open(os.path.join(m.confdir, "main.cf")) as f:
                main = f.read()
            with open(os.path.join(m.confdir, "master.cf")) as f:
                first = f.readline()
            ctx.configs["postfix"] = main + "\n# master.cf: the listener (other services: " \
                "Debian's defaults, chroot n)\n" + first
    return m


def keep_log(ctx, m, tag):
    path = os.path.join(ctx.logdir, "%s-%s.log" % (tag, m.name))
    with open(path, "w") as f:
        f.write(m.log()[-400000:])
    return path


def source_argv(port, k, size, rcpt):
    return ["smtp-source", "-s", "1", "-m", str(k), "-l", str(size), "-f", SENDER,
            "-t", rcpt, "127.0.0.1:%d" % port]


def run_sources(port, n, sessions, size, rcpt, logdir):
    """sessions independent smtp-source processes, one session each, n messages in all.
    Returns (seconds until all are done, list of failure texts)."""
    per = [n // sessions + (1 if i < n % sessions else 0) for i in range(sessions)]
    outs, procs = [], []
    t0 = time.perf_counter()
    for i, k in enumerate(per):
        if k == 0:
            continue
        fh = tempfile.TemporaryFile(dir=logdir)
        outs.append(fh)
        procs.append(subprocess.Popen(source_argv(port, k, size, rcpt), stdout=fh,
                                      stderr=subprocess.STDOUT))
    failures = []
    deadline = time.time() + 600
    for p, fh in zip(procs, outs):
        try:
            p.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.returncode != 0:
            fh.seek(0)
            failures.append("rc=%s %s" % (p.returncode, fh.read().decode(
                errors="replace").strip()[-300:]))
    dt = time.perf_counter() - t0
    for fh in outs:
        fh.close()
    return dt, failures


def delivered_fn(kind, m, sink):
    return sink.count if kind == "relay" else m.delivered_local


def wait_delivered(count_fn, n, timeout, stall=None):
    """Poll until count_fn() >= n; give up after timeout, or after `stall` seconds
    without progress (a message stuck in a retry would otherwise hold the run)."""
    deadline = time.time() + timeout
    last, last_t = -1, time.perf_counter()
    while time.time() < deadline:
        c = count_fn()
        if c >= n:
            return c, True, time.perf_counter()
        if c != last:
            last, last_t = c, time.perf_counter()
        elif stall is not None and time.perf_counter() - last_t > stall:
            break
        time.sleep(0.02)
    return max(last, 0), False, last_t


def relay_unavailable(m):
    return m.name == "kurier" and "remote delivery is not available yet" in m.log()


def run_throughput(ctx, name, kind, size, sessions, n, tag):
    sink = mta.Sink(ctx.base) if kind == "relay" else None
    m = None
    try:
        m = make_mta(ctx, name, relay_port=sink.port if sink else None).start()
        count = delivered_fn(kind, m, sink)
        ov0 = listen_overflows()
        fl0 = disk_flushes(ctx.base)
        t0 = time.perf_counter()
        accept_s, failures = run_sources(m.port, n, sessions, size, RCPT[kind], ctx.logdir)
        got, complete, t_last = wait_delivered(count, n, ctx.cfg["e2e_timeout"],
                                               ctx.cfg["stall"])
        e2e_s = t_last - t0
        fl1 = disk_flushes(ctx.base)
        r = {"n": n, "accept_s": accept_s, "accept_rate": n / accept_s if not failures else
             None, "delivered": got, "complete": complete,
             "e2e_rate": n / e2e_s if complete else None, "client_failures": len(failures),
             # when some messages got stuck: the rate of the others, until the last arrived
             "e2e_partial": got / e2e_s if not complete and got else None,
             "listen_overflows": listen_overflows() - ov0,
             "flushes_per_msg": (fl1 - fl0) / float(n) if fl0 is not None and fl1 is not None
             else None}
        if failures:
            r["failure_sample"] = failures[0]
        if got == 0 and kind == "relay" and relay_unavailable(m):
            ctx.relay_ok[name] = False
            r["unavailable"] = True
            ctx.notes.append("kurier relay scenarios skipped: this build keeps remote mail "
                             "queued ('remote delivery is not available yet')")
        if not complete or failures:
            r["log"] = keep_log(ctx, m, tag)
        return r
    finally:
        if m:
            m.cleanup()
        if sink:
            sink.stop()


def run_ceiling(ctx, size, sessions, n, tag):
    """The load tool's own ceiling: the same smtp-source processes straight into
    smtp-sink (no MTA in between), in the same run as the MTAs."""
    sink = mta.Sink(ctx.base)
    try:
        t0 = time.perf_counter()
        accept_s, failures = run_sources(sink.port, n, sessions, size, RCPT["relay"],
                                         ctx.logdir)
        got, complete, t_last = wait_delivered(sink.count, n, ctx.cfg["e2e_timeout"],
                                               ctx.cfg["stall"])
        e2e_s = t_last - t0
        r = {"n": n, "accept_s": accept_s, "accept_rate": n / accept_s if not failures else
             None, "delivered": got, "complete": complete,
             "e2e_rate": n / e2e_s if complete else None, "client_failures": len(failures)}
        if failures:
            r["failure_sample"] = failures[0]
        return r
    finally:
        sink.stop()


def run_tls(ctx, name, sessions, n, resume, tag):
    """The relay scenario with STARTTLS on every session: clients.py's TLS client (one
    process per core, threads inside), one SMTP session and one handshake per message,
    into the MTA (STARTTLS offered with the bench's certificate), relayed to smtp-sink."""
    sink = mta.Sink(ctx.base)
    m = None
    procs = []
    try:
        tls = mta.make_cert(ctx.base)
        m = make_mta(ctx, name, relay_port=sink.port, k={"tls": tls}, p={"tls": tls}).start()
        nproc = max(1, min(os.cpu_count() or 1, sessions))
        t0, t0w = time.perf_counter(), time.time()
        for i in range(nproc):
            k = n // nproc + (1 if i < n % nproc else 0)
            ks = sessions // nproc + (1 if i < sessions % nproc else 0)
            procs.append(subprocess.Popen(
                ["/usr/bin/python3", os.path.join(HERE, "clients.py"), "tls", str(m.port),
                 str(k), str(ks), "1024", SENDER, RCPT["relay"], "1" if resume else "0"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        parts = []
        for p in procs:
            try:
                out, err = p.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            try:
                parts.append(json.loads(out.decode().strip().splitlines()[-1]))
            except (ValueError, IndexError):
                parts.append({"messages": 0, "handshakes": 0, "resumed": 0,
                              "handshake_s": 0.0, "errors": 1, "seconds": 0.0,
                              "error_sample": "client rc=%s: %s" % (
                                  p.returncode, err.decode(errors="replace")[-200:])})
        # the clients' own time (slowest process), without the interpreters' start
        client_s = max([x.get("seconds", 0.0) for x in parts] + [0.0]) or (
            time.perf_counter() - t0)
        got, complete, t_last = wait_delivered(sink.count, n, ctx.cfg["e2e_timeout"],
                                               ctx.cfg["stall"])
        # from the first client's start, not counting the interpreters' start-up
        starts = [x["t_start"] for x in parts if x.get("t_start")]
        e2e_s = t_last - t0 - (max(0.0, min(starts) - t0w) if starts else 0.0)
        tot = {k: sum(x.get(k, 0) for x in parts) for k in ("messages", "handshakes",
                                                           "resumed", "handshake_s",
                                                           "errors")}
        r = {"n": n, "resume": resume, "delivered": got, "complete": complete,
             "accepted": tot["messages"], "errors": tot["errors"],
             "msg_rate": tot["messages"] / client_s if client_s else None,
             "hs_rate": tot["handshakes"] / client_s if client_s else None,
             "resumed_share": tot["resumed"] / float(tot["handshakes"]) if tot["handshakes"]
             else None,
             "hs_ms": 1000.0 * tot["handshake_s"] / tot["handshakes"] if tot["handshakes"]
             else None,
             "e2e_rate": n / e2e_s if complete and not tot["errors"] else None}
        for x in parts:
            if x.get("version"):
                r["proto"] = "%s %s" % (x["version"], x.get("cipher", ""))
            if x.get("error_sample") and "error_sample" not in r:
                r["error_sample"] = x["error_sample"]
        if tot["errors"] or not complete:
            r["log"] = keep_log(ctx, m, tag)
        return r
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if m:
            m.cleanup()
        sink.stop()


def run_idle(ctx, name, n, tag):
    if name == "kurier":
        m = make_mta(ctx, name)
    else:
        m = make_mta(ctx, name, p={"smtpd_procs": min(n, POSTFIX_IDLE_PROCS)})
    try:
        m.start()
        time.sleep(0.3)
        rss0, pss0 = mta.memory(m.pids())

        def measure():
            pids = m.pids()
            rss, pss = mta.memory(pids)
            return {"rss": rss, "pss": pss, "procs": len(pids)}

        r = clients.idle_sessions(m.port, n, measure)
        r.update({"n": n, "rss_idle": rss0, "pss_idle": pss0, "alive": m.alive()})
        if r["served"] < n:
            r["log"] = keep_log(ctx, m, tag)
        return r
    finally:
        m.cleanup()


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def run_latency(ctx, name, kind, tag):
    sink = mta.Sink(ctx.base) if kind == "relay" else None
    m = None
    try:
        m = make_mta(ctx, name, relay_port=sink.port if sink else None).start()
        L = ctx.cfg["latency"]
        spans = []
        with flushtrace.FlushTrace(mta.tids(m.pids())) as ft:
            lat, errors = clients.latency(m.port, L["sessions"], L["total"], L["rate"],
                                          L["size"], SENDER, RCPT[kind], spans)
        r = {"n": len(lat), "errors": len(errors), "p50": pct(lat, 50), "p99": pct(lat, 99),
             "max": max(lat) if lat else None, "trace_error": ft.error}
        # each message against the flush it waited for (the MTA's own fsync/fdatasync,
        # timed by the kernel in this run): what the MTA adds on top of its disk
        per, r["no_own_flush"] = flushtrace.own_flush(spans, ft.flushes)
        if per and not ft.error:
            r["flush_p50"], r["flush_p99"] = pct([x[1] for x in per], 50), pct(
                [x[1] for x in per], 99)
            r["rest_p50"], r["rest_p99"] = pct([x[2] for x in per], 50), pct(
                [x[2] for x in per], 99)
            r["rest_max"] = max(x[2] for x in per)
        if errors:
            r["error_sample"] = errors[0]
            r["log"] = keep_log(ctx, m, tag)
        return r
    finally:
        if m:
            m.cleanup()
        if sink:
            sink.stop()


def run_latency_floor(ctx):
    """The latency client straight into smtp-sink (which answers at once and stores
    nothing): what the client and the loopback themselves add to every figure."""
    sink = mta.Sink(ctx.base)
    try:
        L = ctx.cfg["latency"]
        lat, errors = clients.latency(sink.port, L["sessions"], L["total"], L["rate"], L["size"],
                                      SENDER, RCPT["relay"])
        return {"n": len(lat), "errors": len(errors), "p50": pct(lat, 50), "p99": pct(lat, 99),
                "max": max(lat) if lat else None}
    finally:
        sink.stop()


STRACE_CALLS = "fsync,fdatasync,sync_file_range,syncfs,sync,msync"


def run_durability(ctx, name, kind, tag):
    """fsync-family calls per accepted message, counted by strace -f -c on every thread
    of the MTA over a short run (20 clients, 1 KiB), until everything is delivered."""
    sink = mta.Sink(ctx.base) if kind == "relay" else None
    m = None
    st = None
    try:
        m = make_mta(ctx, name, relay_port=sink.port if sink else None).start()
        n = ctx.cfg["durability"]
        out = os.path.join(ctx.logdir, "%s-%s.strace" % (tag, name))
        # every call with its file's path (-y): the Maildir's share is told apart
        argv = ["strace", "-f", "-q", "-y", "-e", "trace=" + STRACE_CALLS, "-o", out]
        for t in mta.tids(m.pids()):
            argv += ["-p", str(t)]
        st = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attach
        fl0 = disk_flushes(ctx.base)
        run_sources(m.port, n, 20, 1024, RCPT[kind], ctx.logdir)
        got, complete, _ = wait_delivered(delivered_fn(kind, m, sink), n,
                                          ctx.cfg["e2e_timeout"], ctx.cfg["stall"])
        time.sleep(0.5)
        fl1 = disk_flushes(ctx.base)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        st = None
        calls, maildir = {}, 0
        names = STRACE_CALLS.split(",")
        root = getattr(m, "maildir_root", None)
        with open(out) as f:
            for line in f:
                if "resumed>" in line:  # the call was counted on its "unfinished" line
                    continue
                mm = re.match(r"^\d+\s+(\w+)\((?:\d+<([^>]*)>)?", line)
                if not mm or mm.group(1) not in names:
                    continue
                calls[mm.group(1)] = calls.get(mm.group(1), 0) + 1
                if root and mm.group(2) and mm.group(2).startswith(root + "/"):
                    maildir += 1
        total = sum(calls.values())
        return {"n": n, "delivered": got, "complete": complete, "calls": calls,
                "per_msg": total / float(n), "maildir_per_msg": maildir / float(n),
                "flushes_per_msg": (fl1 - fl0) / float(n) if fl0 is not None else None}
    finally:
        if st is not None:
            st.send_signal(signal.SIGINT)
            try:
                st.wait(timeout=10)
            except subprocess.TimeoutExpired:
                st.kill()
                st.wait()
        if m:
            m.cleanup()
        if sink:
            sink.stop()


def run_spoolproto(ctx, prog):
    """bench/spoolproto.c on the spool's file system: its Markdown table, or raises."""
    argv = [prog, "-d", ctx.base] + ctx.cfg["spoolproto"]
    p = subprocess.run(argv, capture_output=True, timeout=900)
    if p.returncode != 0:
        raise HarnessError("%s failed: %s" % (" ".join(argv),
                                              p.stderr.decode(errors="replace").strip()))
    return {"argv": argv, "table": p.stdout.decode(errors="replace").rstrip()}


# --- report ----------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, unit="", prec=0):
    if x is None:
        return "n/a"
    return ("%%.%df%%s" % prec) % (x, unit)


def span(xs, prec=0, scale=1.0):
    vals = [x * scale for x in xs if x is not None]
    if not vals:
        return "n/a"
    s = ("%%.%df" % prec) % statistics.median(vals)
    if len(vals) > 1:
        s += (" (%%.%df–%%.%df)" % (prec, prec)) % (min(vals), max(vals))
    if len(vals) < len(xs):
        s += " [%d of %d runs]" % (len(vals), len(xs))
    return s


def ratio(a, b, prec=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return ("%%.%df×" % prec) % (a / b)


def share_of(runs, ceiling):
    """Each run's e2e rate over the ceiling of the same pair (index-aligned), or over the
    ceiling's median when the lists do not line up."""
    if len(runs) == len(ceiling):
        return [r["e2e_rate"] / c["e2e_rate"] if r["e2e_rate"] and c["e2e_rate"] else None
                for r, c in zip(runs, ceiling)]
    cm = med([c["e2e_rate"] for c in ceiling])
    return [r["e2e_rate"] / cm if r["e2e_rate"] and cm else None for r in runs]


def size_name(size):
    return "%d KiB" % (size // 1024)


def report(ctx, mach, res, started, elapsed, smoke):
    cfg = ctx.cfg
    L = []
    w = L.append
    w("# kurier vs Postfix: bench results" + (" (smoke run, not the real numbers)"
                                             if smoke else ""))
    w("")
    w("Generated by `%s` on %s in %.0f s. Do not edit: `make bench` rewrites this file." % (
        "make bench-smoke" if smoke else "make bench", started, elapsed))
    w("The two MTAs ran on the same machine in the same run, alternating kurier, Postfix, "
      "kurier, Postfix (%d pair%s per scenario); each run starts a fresh instance with an "
      "empty queue. Figures are medians with min–max; ratios are kurier/Postfix of the "
      "medians. The machine is shared, so absolute figures drift between runs; the ratios "
      "are the point." % (cfg["pairs"], "" if cfg["pairs"] == 1 else "s"))
    w("")
    w("## Machine")
    w("")
    w("- %d cores (%s), %.1f GiB RAM, %s, Linux %s" % (mach["cores"], mach["cpu"],
                                                       mach["mem_gib"], mach["os"],
                                                       mach["kernel"]))
    w("- spool filesystem: %s on %s (%s); write 4 KiB + fsync in a loop: **%.0f fsync/s** "
      "(%.2f ms each on average, p99 %.2f ms); append 1,300 bytes to a preallocated file + "
      "fdatasync, %d times a second (the latency scenario's pace): p50 %.2f ms, **p99 %.2f "
      "ms**" % (mach["fs"][1], mach["fs"][0], mach["fs"][2], mach["fsync_per_s"],
                mach["fsync_ms"], mach.get("fsync_p99_ms", 0.0), mach.get("paced_rate", 0),
                mach.get("paced_p50_ms", 0.0), mach.get("paced_p99_ms", 0.0)))
    w("- kurier %s (built with `make`, -O2; %s); Postfix %s (Debian package); Python %s" % (
        mach["kurier"], mach["cc"], mach["postfix"], mach["python"]))
    w("")
    for note in ctx.notes:
        w("> Note: %s" % note)
        w("")

    # throughput
    w("## Relay and local delivery")
    w("")
    w("N messages from independent `smtp-source` processes (one session each); **accept** = "
      "N / time until every client is done; **end to end** = N / time until the smtp-sink "
      "(relay) or the Maildir (local) holds all N.")
    w("")
    w("| scenario | N | kurier accept/s | Postfix accept/s | ratio | kurier end-to-end/s | "
      "Postfix end-to-end/s | ratio |")
    w("|---|---|---|---|---|---|---|---|")
    for (kind, size, sess, n) in cfg["throughput"]:
        key = ("tp", kind, size, sess)
        k, p = res.get(key, {}).get("kurier", []), res.get(key, {}).get("postfix", [])
        if k and all(r.get("unavailable") for r in k) or (kind == "relay" and
                                                         not ctx.relay_ok["kurier"] and not k):
            kacc = ke2e = "n/a (no remote delivery)"
            ra = re_ = "n/a"
        else:
            kacc, ke2e = span([r["accept_rate"] for r in k]), span([r["e2e_rate"] for r in k])
            if any(r.get("e2e_partial") for r in k):
                ke2e += " — incomplete runs, rate of the delivered part: %s" % span(
                    [r.get("e2e_partial") for r in k if not r["complete"]])
            ra = ratio(med([r["accept_rate"] for r in k]), med([r["accept_rate"] for r in p]))
            re_ = ratio(med([r["e2e_rate"] for r in k]), med([r["e2e_rate"] for r in p]))
        w("| %s, %s, %d sessions | %d | %s | %s | %s | %s | %s | %s |" % (
            kind, size_name(size), sess, n, kacc, span([r["accept_rate"] for r in p]), ra,
            ke2e, span([r["e2e_rate"] for r in p]), re_))
    w("")
    # the load tool's ceiling
    relay_tp = [t for t in cfg["throughput"] if t[0] == "relay"]
    if any(res.get(("tp",) + t[:3], {}).get("ceiling") for t in relay_tp):
        w("### The load tool's ceiling")
        w("")
        w("The same `smtp-source` processes straight into the same `smtp-sink`, no MTA in "
          "between, once in every pair (ceiling, kurier, Postfix), on the same cores: what "
          "the clients and the sink themselves can do here. Each MTA's relay end-to-end rate "
          "is given as a share of the ceiling measured in the same pair (median, min–max). "
          "Disk flushes = completed flush requests of the spool's disk in /proc/diskstats "
          "over the run (no strace attached; other users of the disk count too).")
        w("")
        w("| scenario | N | ceiling/s | kurier, % of ceiling | Postfix, % of ceiling | "
          "kurier disk flushes per message | Postfix disk flushes per message |")
        w("|---|---|---|---|---|---|---|")
        for (kind, size, sess, n) in relay_tp:
            by = res.get(("tp", kind, size, sess), {})
            c = by.get("ceiling", [])
            if not c:
                continue
            cells = []
            for name in ("kurier", "postfix"):
                rs = by.get(name, [])
                cells.append(span(share_of(rs, c), 0, 100.0) if rs else "n/a")
            w("| %s, %s, %d sessions | %d | %s | %s | %s | %s | %s |" % (
                kind, size_name(size), sess, n, span([r["e2e_rate"] for r in c]), cells[0],
                cells[1], span([r.get("flushes_per_msg") for r in by.get("kurier", [])], 2),
                span([r.get("flushes_per_msg") for r in by.get("postfix", [])], 2)))
        w("")
    # local delivery's disk flushes (issue 16 item 5)
    local_tp = [t for t in cfg["throughput"] if t[0] == "local"]
    if any(res.get(("tp",) + t[:3], {}).get("kurier") for t in local_tp):
        w("### Disk flushes per locally delivered message")
        w("")
        w("Completed flush requests of the disk holding the spool and the Maildirs "
          "(/proc/diskstats) over each local run, from the first client to the last message "
          "in the Maildir, per message: reception and delivery together (median, min–max). "
          "The fsync-family calls behind them are counted in the durability section.")
        w("")
        w("| scenario | N | kurier | Postfix |")
        w("|---|---|---|---|")
        for (kind, size, sess, n) in local_tp:
            by = res.get(("tp", kind, size, sess), {})
            w("| %s, %s, %d sessions | %d | %s | %s |" % (
                kind, size_name(size), sess, n,
                span([r.get("flushes_per_msg") for r in by.get("kurier", [])], 2),
                span([r.get("flushes_per_msg") for r in by.get("postfix", [])], 2)))
        w("")
    # STARTTLS
    if cfg.get("tls") and any(res.get(("tls",) + t) for t in cfg["tls"]):
        proto = ""
        for t in cfg["tls"]:
            for rs in res.get(("tls",) + t, {}).values():
                for r in rs:
                    proto = proto or r.get("proto", "")
        w("## STARTTLS relay")
        w("")
        w("The relay scenario (1 KiB, to smtp-sink) with STARTTLS on every session: "
          "`bench/clients.py tls` (Python's ssl, one process per core with threads; "
          "smtp-source has no TLS), one SMTP session and one TLS 1.3 handshake (ECDHE; "
          "X25519 with both sides' OpenSSL defaults) per message, both MTAs with the same "
          "self-signed ECDSA P-256 certificate (kurier: "
          "`tls starttls` on the listener; Postfix: `smtpd_tls_security_level = may`, "
          "tickets from tlsmgr). *resume* = the client offers the ticket of its previous "
          "session; *full* = it never does. handshakes/s and messages/s = count / time until "
          "every client was done; end to end = N / time until the sink held all N; "
          "handshake ms = client-side mean. Negotiated: %s." % (proto or "n/a"))
        w("")
        w("| scenario | N | MTA | handshakes/s | resumed | handshake ms | messages/s | "
          "end-to-end/s | errors |")
        w("|---|---|---|---|---|---|---|---|---|")
        for t in cfg["tls"]:
            sess, n, resume = t
            by = res.get(("tls",) + t, {})
            label = "%d sessions, %s" % (sess, "resume" if resume else "full")
            for name in ("kurier", "postfix"):
                rs = by.get(name, [])
                if rs:
                    w("| %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
                        label, n, name, span([r["hs_rate"] for r in rs]),
                        span([r["resumed_share"] for r in rs], 0, 100.0) + " %",
                        span([r["hs_ms"] for r in rs], 2), span([r["msg_rate"] for r in rs]),
                        span([r["e2e_rate"] for r in rs]), span([r["errors"] for r in rs])))
            k, p = by.get("kurier", []), by.get("postfix", [])
            if k and p:
                w("| %s | | ratio | %s | | | %s | %s | |" % (
                    label, ratio(med([r["hs_rate"] for r in k]), med([r["hs_rate"] for r in p])),
                    ratio(med([r["msg_rate"] for r in k]), med([r["msg_rate"] for r in p])),
                    ratio(med([r["e2e_rate"] for r in k]), med([r["e2e_rate"] for r in p]))))
        w("")
    problems = []
    for key, by in sorted(res.items(), key=lambda kv: str(kv[0])):
        for name, runs in by.items():
            for i, r in enumerate(runs):
                if r.get("unavailable"):
                    continue
                bits = []
                if r.get("client_failures"):
                    bits.append("%d smtp-source processes failed (e.g. `%s`)" % (
                        r["client_failures"], r.get("failure_sample", "")[:200]))
                if "complete" in r and not r["complete"]:
                    bits.append("only %d of %d delivered (gave up after %d s without "
                                "progress or %d s in all)" % (r["delivered"], r["n"],
                                                             cfg["stall"], cfg["e2e_timeout"]))
                if r.get("errors"):
                    bits.append("%d client errors (e.g. `%s`)" % (r["errors"],
                                                                 r.get("error_sample", "")))
                if r.get("listen_overflows"):
                    bits.append("%d listen queue overflows" % r["listen_overflows"])
                if bits:
                    what = {"tp": "%s %s, %s sessions" % (key[1], size_name(key[2]), key[3])
                            if len(key) == 4 else "", "idle": "idle %s" % (key[1:] or ("",))[0],
                            "tls": "STARTTLS %s sessions, %s" % (
                                key[1], "resume" if key[-1] else "full") if len(key) == 4
                            else "", "latency": "latency", "durability": "durability %s" % (
                                key[1:] or ("",))[0]}.get(key[0], str(key))
                    problems.append("- %s, %s run %d: %s%s" % (
                        what, name, i + 1, "; ".join(bits),
                        " (log: `%s`)" % os.path.relpath(r["log"], ROOT) if r.get("log")
                        else ""))
    # idle
    w("## Idle sessions")
    w("")
    w("N connections opened together by an asyncio client (at most 2,000 connecting at "
      "once), each reads the banner and sends EHLO, then all stay open while the MTA's "
      "processes are measured from /proc: RSS summed over every process (shared pages "
      "counted once per process) and PSS (shared pages split). *Served* = 220 banner and "
      "250 to EHLO; *refused* = another code, reset or close; *no answer* = connected but "
      "no reply within 10 s (waiting in the listen queue), or no TCP connection within 5 s. "
      "Postfix runs at most %d smtpd processes here (one process per session)." %
      POSTFIX_IDLE_PROCS)
    w("")
    w("| N | MTA | served | refused | no answer | processes | RSS sum MiB | PSS sum MiB | "
      "RSS before MiB |")
    w("|---|---|---|---|---|---|---|---|---|")
    MiB = 1.0 / 1048576
    for n in cfg["idle"]:
        for name in ("kurier", "postfix"):
            rs = res.get(("idle", n), {}).get(name, [])
            if not rs:
                continue
            w("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                n, name, span([r["served"] for r in rs]), span([r["refused"] for r in rs]),
                span([r["no_answer"] + r["connect_failed"] for r in rs]),
                span([r["procs"] for r in rs]), span([r["rss"] for r in rs], 1, MiB),
                span([r["pss"] for r in rs], 1, MiB), span([r["rss_idle"] for r in rs], 1,
                                                           MiB)))
        k = res.get(("idle", n), {}).get("kurier", [])
        p = res.get(("idle", n), {}).get("postfix", [])
        if k and p:
            w("| %d | ratio | %s | | | | %s | %s | |" % (
                n, ratio(med([r["served"] for r in k]), med([r["served"] for r in p])),
                ratio(med([r["rss"] for r in k]), med([r["rss"] for r in p])),
                ratio(med([r["pss"] for r in k]), med([r["pss"] for r in p]))))
    w("")
    # latency
    Lc = cfg["latency"]
    lkind = getattr(ctx, "latency_kind", "local")
    w("## Latency: end of DATA → 250")
    w("")
    w("Open loop: %d sessions together offer %d messages/s (%d messages of %s, recipient "
      "%s, %s); time from sending the final `.` line to reading the 250." % (
          Lc["sessions"], Lc["rate"], Lc["total"], size_name(Lc["size"]) if Lc["size"] >= 1024
          else "%d B" % Lc["size"], RCPT[lkind], lkind))
    w("")
    w("The *floor* row is the same client straight into smtp-sink (which answers at once "
      "and writes nothing to disk), once in every pair: what the client, Python's event "
      "loop and the loopback add to both MTAs' figures.")
    w("")
    w("*Own flush* is, per message, the MTA's fsync or fdatasync it waited for: the last "
      "one of its processes that began after the `.` was sent and ended before the 250 "
      "was read, timed by the kernel (syscall trace points in an ftrace instance of the "
      "bench's own, clock CLOCK_MONOTONIC as the client's; nothing is stopped or slowed). "
      "*Beyond it* is the message's latency minus that flush: everything else the MTA, "
      "the client and the loopback took, including waiting for an earlier batch's flush.")
    w("")
    w("| MTA | p50 ms | p99 ms | max ms | errors | own flush p50 / p99 ms | "
      "beyond it p50 / p99 / max ms |")
    w("|---|---|---|---|---|---|---|")

    def traced(rs, key, digits=2):
        xs = [r.get(key) for r in rs if r.get(key) is not None]
        return span(xs, digits, 1000) if xs else "n/a"

    for name in ("floor", "kurier", "postfix"):
        rs = res.get(("latency",), {}).get(name, [])
        if rs:
            fl = "" if name == "floor" else "%s / %s" % (traced(rs, "flush_p50"),
                                                        traced(rs, "flush_p99"))
            rest = "" if name == "floor" else "%s / %s / %s" % (
                traced(rs, "rest_p50"), traced(rs, "rest_p99"), traced(rs, "rest_max", 1))
            w("| %s | %s | %s | %s | %s | %s | %s |" % (
                name, span([r["p50"] for r in rs], 2, 1000), span([r["p99"] for r in rs], 2,
                                                                  1000),
                span([r["max"] for r in rs], 1, 1000), span([r["errors"] for r in rs]), fl,
                rest))
    k = res.get(("latency",), {}).get("kurier", [])
    p = res.get(("latency",), {}).get("postfix", [])
    if k and p:
        w("| ratio | %s | %s | | | | |" % (ratio(med([r["p50"] for r in k]),
                                              med([r["p50"] for r in p])),
                                        ratio(med([r["p99"] for r in k]),
                                              med([r["p99"] for r in p]))))
    te = sorted(set(r["trace_error"] for rs in res.get(("latency",), {}).values() for r in rs
                    if r.get("trace_error")))
    if te:
        w("")
        w("Flushes not traced: %s." % "; ".join(te))
    lone = ["%s %d" % (name, r["no_own_flush"]) for name in ("kurier", "postfix")
            for r in res.get(("latency",), {}).get(name, []) if r.get("no_own_flush")]
    if lone:
        w("")
        w("Messages answered without a flush of their own inside their time (left out of "
          "the flush columns), per run: %s." % ", ".join(lone))
    w("")
    # durability
    w("## Durability: fsync per accepted message")
    w("")
    w("`strace -f -y -e trace=%s -p <every thread of the MTA>` over %d messages of 1 KiB "
      "(20 client processes), until all were delivered; *of which Maildir* = the calls on "
      "files and folders in the Maildirs (local delivery; the rest is the queue); disk "
      "flushes = completed flush requests of the spool's disk in /proc/diskstats over the "
      "same time (other users of the disk count too)." % (STRACE_CALLS, cfg["durability"]))
    w("")
    w("| scenario | MTA | delivered | calls per message | of which Maildir | calls | "
      "disk flushes per message |")
    w("|---|---|---|---|---|---|---|")
    for kind in ("relay", "local"):
        for name in ("kurier", "postfix"):
            rs = res.get(("durability", kind), {}).get(name, [])
            for r in rs:
                if kind == "relay" and name == "kurier" and not ctx.relay_ok["kurier"]:
                    w("| %s | %s | n/a (no remote delivery) | | | | |" % (kind, name))
                    continue
                w("| %s | %s | %d of %d | %.2f | %.2f | %s | %s |" % (
                    kind, name, r["delivered"], r["n"], r["per_msg"],
                    r.get("maildir_per_msg", 0.0),
                    ", ".join("%s %d" % kv for kv in sorted(r["calls"].items())) or "none",
                    fmt(r["flushes_per_msg"], "", 2)))
    w("")
    # the spool commit prototypes (issue 16)
    sp = res.get(("spoolproto",), {}).get("proto", [])
    if sp:
        w("## Spool commit designs (bench/spoolproto.c)")
        w("")
        w("One process commits N messages (content + a %d-byte envelope) in batches, on the "
          "spool's file system, three ways: **segment** = one checksummed record per "
          "message appended to a preallocated segment file, one `fdatasync` per batch; "
          "**lmdb** = LMDB with `MDB_NOSYNC | MDB_NOMETASYNC`, one write transaction per "
          "batch, then `mdb_env_sync(env, 1)`; **files** = the spool before issue 16 (two "
          "files per message, one `syncfs`, renames, one fsync of `queue/` per batch). Flush "
          "calls = fsync-family calls the scheme made; disk flushes from /proc/diskstats; "
          "median of the repeats. Command: `%s`." % (300, " ".join(
              ["bench/spoolproto" if i == 0 else a for i, a in enumerate(sp[0]["argv"])])))
        w("")
        L.extend(sp[0]["table"].splitlines())
        w("")
    # targets
    w("## Targets (goals for the code, not test assertions)")
    w("")

    def e2e(kind, size, name):
        vals = []
        for (kd, sz, sess, n) in cfg["throughput"]:
            if kd == kind and sz == size:
                vals.append(med([r["e2e_rate"] for r in res.get(("tp", kd, sz, sess), {})
                                 .get(name, [])]))
        return vals

    w("| target | where kurier stands |")
    w("|---|---|")
    for size, goal in ((1024, 3.0), (102400, 2.0)):
        parts = []
        for (kd, sz, sess, n) in cfg["throughput"]:
            if kd != "relay" or sz != size:
                continue
            by = res.get(("tp", kd, sz, sess), {})
            km = med([r["e2e_rate"] for r in by.get("kurier", [])])
            pm = med([r["e2e_rate"] for r in by.get("postfix", [])])
            if km is None or pm is None:
                parts.append("%d sessions: n/a" % sess)
            else:
                parts.append("%d sessions: %.2f× (%s)" % (sess, km / pm, "met" if km / pm >= goal
                                                          else "not met"))
        w("| relay end to end at %s ≥ %.0f× Postfix | %s |" % (
            size_name(size), goal, "; ".join(parts) or "not measured"))
    by = res.get(("tp", "relay", 1024, 20), {})
    if by.get("ceiling") and by.get("kurier"):
        sh_ = med(share_of(by["kurier"], by["ceiling"]))
        w("| kurier relay rate at 1 KiB, 20 sessions ≥ 60 %% of the load tool's ceiling | %s |"
          % ("n/a" if sh_ is None else "%.0f %% (%s)" % (100 * sh_, "met" if sh_ >= 0.6
                                                          else "not met")))
    fl = [r.get("flushes_per_msg") for t in cfg["throughput"] if t[0] == "relay"
          for r in res.get(("tp",) + t[:3], {}).get("kurier", [])]
    if any(x is not None for x in fl):
        w("| disk flushes per relayed message ≤ 1 / batch size (reported) | %s per message "
          "(median over the relay runs) |" % fmt(med(fl), "", 2))
    dl = [r for r in res.get(("durability", "local"), {}).get("kurier", [])]
    if dl:
        w("| fsync-family calls per locally delivered message (reported) | %.2f, of which %.2f "
          "in the Maildir (durability run) |" % (dl[0]["per_msg"],
                                                 dl[0].get("maildir_per_msg", 0.0)))
    by = [res.get(("tls",) + t, {}) for t in cfg.get("tls", []) if t[0] == 20 and t[2]]
    if by and by[0].get("kurier") and by[0].get("postfix"):
        km = med([r["e2e_rate"] for r in by[0]["kurier"]])
        pm = med([r["e2e_rate"] for r in by[0]["postfix"]])
        w("| STARTTLS relay, 20 sessions ≥ 1.5× Postfix | %s |" % (
            "n/a" if km is None or not pm else "%.2f× (%s)" % (km / pm, "met" if km / pm >= 1.5
                                                               else "not met")))
    big = max(cfg["idle"])
    k = res.get(("idle", big), {}).get("kurier", [])
    if k:
        rss = med([r["rss"] for r in k]) * MiB
        served = med([r["served"] for r in k])
        w("| %d idle sessions in < 100 MiB total RSS | %.1f MiB RSS with %d of %d served (%s) "
          "|" % (big, rss, served, big, "met" if rss < 100 and served == big else "not met"))
    k = res.get(("latency",), {}).get("kurier", [])
    if k:
        p99 = med([r["p99"] for r in k]) * 1000
        rest = [r["rest_p99"] for r in k if r.get("rest_p99") is not None]
        if rest:
            verdict = ("per message, the latency minus the flush it waited for (kurierd's "
                       "own fdatasync, timed by the kernel in the same run): p99 %.2f ms "
                       "against 1 ms, **%s**" % (med(rest) * 1000,
                                                 "met" if med(rest) * 1000 <= 1.0
                                                 else "not met"))
        else:
            verdict = "per message against its own flush: not measured (%s)" % (
                k[0].get("trace_error") or "no flush traced")
        fl = res.get(("latency",), {}).get("floor", [])
        other = ("the client's own floor p99 %.2f ms; " % (med([r["p99"] for r in fl]) * 1000)
                 if fl else "")
        other += ("other readings of \"one flush\": a back-to-back fsync loop's mean %.2f ms "
                  "(p99 ≤ %.2f ms: %s), one append + fdatasync at %d a second, p99 %.2f ms "
                  "(p99 ≤ %.2f ms: %s)" % (
                      mach["fsync_ms"], mach["fsync_ms"] + 1.0,
                      "met" if p99 <= mach["fsync_ms"] + 1.0 else "not met",
                      mach.get("paced_rate", 0), mach.get("paced_p99_ms", 0.0),
                      mach.get("paced_p99_ms", 0.0) + 1.0,
                      "met" if p99 <= mach.get("paced_p99_ms", 0.0) + 1.0 else "not met"))
        w("| p99 end of DATA → 250 at %d msg/s ≤ one measured flush + 1 ms | p99 %.2f ms; "
          "%s. (%s) |" % (cfg["latency"]["rate"], p99, verdict, other))
    w("")
    # what the profile showed and what was changed: written by hand, kept across runs
    prof = os.path.join(HERE, "PROFILE.md")
    if os.path.exists(prof) and not smoke:
        with open(prof) as f:
            L.extend(f.read().rstrip().splitlines())
        w("")
    if problems:
        w("## Problems seen in this run")
        w("")
        L.extend(problems)
        w("")
    # commands
    w("## Exact commands")
    w("")
    w("```sh")
    w("make bench          # = scripts/install-deps; make all; bench/bench.py --out "
      "bench/RESULTS.md")
    w("make bench-smoke    # = bench/bench.py --smoke --out build/bench-smoke.md")
    w("# sink (relay scenarios), dumps on tmpfs:")
    w("smtp-sink -u postfix -h sink.remote.test -d /dev/shm/kurier-bench-sink-XXX/dump/%H%M%S. "
      "127.0.0.1:SINKPORT 1024")
    w("# load: SESSIONS processes like this one at once, N messages in all:")
    w(" ".join(source_argv(0, "N/SESSIONS", "SIZE", "RCPT")).replace("127.0.0.1:0",
                                                                     "127.0.0.1:MTAPORT"))
    w("#   SIZE 1024 or 102400; RCPT %s (relay) or %s (local)" % (RCPT["relay"],
                                                                 RCPT["local"]))
    w("# the load tool's ceiling: the same smtp-source processes, to 127.0.0.1:SINKPORT")
    w("# STARTTLS load: one process per core, each with its share of sessions and messages:")
    w("/usr/bin/python3 bench/clients.py tls MTAPORT N/PROCS SESSIONS/PROCS 1024 %s %s "
      "RESUME(1|0)" % (SENDER, RCPT["relay"]))
    w("# Postfix instance: postfix -c CONFDIR start / postfix -c CONFDIR stop")
    w("# kurier instance:  build/kurier -c CONF domain add example.test; build/kurier -c CONF "
      "mailbox add bench@example.test --password x; build/kurierd -c CONF")
    w("```")
    w("")
    w("kurier's config (ports differ per run; `relay_host` only in relay scenarios):")
    w("")
    w("```")
    L.extend(ctx.configs.get("kurier", "").rstrip().splitlines())
    w("```")
    w("")
    w("Postfix's main.cf (`relayhost` only in relay scenarios; `default_process_limit` and "
      "the smtpd limit become %d in the idle scenario):" % POSTFIX_IDLE_PROCS)
    w("")
    w("```")
    L.extend(ctx.configs.get("postfix", "").rstrip().splitlines())
    w("```")
    w("")
    return "\n".join(L) + "\n"


# --- main ------------------------------------------------------------------------------

def check_tools(bindir):
    if os.geteuid() != 0:
        raise HarnessError("run as root (smtp-sink -u postfix, kurierd's privilege drop, "
                           "postfix -c)")
    for tool in ("smtp-source", "smtp-sink", "postfix", "postconf", "strace"):
        if not shutil.which(tool):
            raise HarnessError("%s missing: run scripts/install-deps" % tool)
    for b in ("kurierd", "kurier"):
        if not os.access(os.path.join(bindir, b), os.X_OK):
            raise HarnessError("%s/%s missing: run make" % (bindir, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="few messages, one pair")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--only", default="",
                    help="comma list: tp,tls,idle,latency,durability,spool")
    ap.add_argument("--spoolproto", default=None,
                    help="the built bench/spoolproto.c (make bench builds it): run it too")
    args = ap.parse_args()
    cfg = dict(SMOKE if args.smoke else FULL)
    if args.pairs:
        cfg["pairs"] = args.pairs
    out = args.out or (os.path.join(ROOT, "build", "bench-smoke.md") if args.smoke
                       else os.path.join(HERE, "RESULTS.md"))
    only = set(x for x in args.only.split(",") if x)

    check_tools(args.build)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:  # root may raise the hard limit: 10,000 sessions need 10,000+ fds on each side
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mta.become_subreaper()

    base_parent = "/var/tmp" if os.path.isdir("/var/tmp") else None
    base = tempfile.mkdtemp(prefix="kurier-bench-", dir=base_parent)
    os.chmod(base, 0o755)
    bindir = os.path.join(base, "bin")  # a copy: a rebuild during the run changes nothing
    os.mkdir(bindir)
    os.chmod(bindir, 0o755)
    for b in ("kurierd", "kurier"):
        shutil.copy2(os.path.join(args.build, b), bindir)
    logdir = os.path.join(ROOT, "build", "bench-smoke-logs" if args.smoke else "bench-logs")
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir)
    ctx = Ctx(args, cfg, base, bindir, logdir)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    t_start = time.time()
    res = {}
    broken = []

    def add(key, name, r):
        res.setdefault(key, {}).setdefault(name, []).append(r)

    def want_(x):
        return not only or x in only

    rc = 0
    try:
        mach = machine(base, cfg)
        log("machine: %d cores, %.0f fsync/s on %s" % (mach["cores"], mach["fsync_per_s"],
                                                       mach["fs"][1]))
        order = ("kurier", "postfix")
        if want_("tp"):
            for (kind, size, sess, n) in cfg["throughput"]:
                key = ("tp", kind, size, sess)
                for i in range(cfg["pairs"]):
                    if kind == "relay":  # the load tool's ceiling, in every pair
                        tag = "ceiling-%d-%d-%d" % (size, sess, i + 1)
                        r = run_ceiling(ctx, size, sess, n, tag)
                        add(key, "ceiling", r)
                        log("%s smtp-source -> smtp-sink: %s/s, delivered %d/%d" % (
                            tag, fmt(r["e2e_rate"]), r["delivered"], n))
                        if r["delivered"] == 0:
                            broken.append("%s: smtp-sink received nothing" % tag)
                    for name in order:
                        if kind == "relay" and not ctx.relay_ok[name]:
                            continue
                        tag = "%s-%d-%d-%d" % (kind, size, sess, i + 1)
                        r = run_throughput(ctx, name, kind, size, sess, n, tag)
                        add(key, name, r)
                        log("%s %s %s: accept %s/s, e2e %s/s, delivered %d/%d%s" % (
                            tag, name, "", fmt(r["accept_rate"]), fmt(r["e2e_rate"]),
                            r["delivered"], n, ", %d client failures" % r["client_failures"]
                            if r["client_failures"] else ""))
                        if r["delivered"] == 0 and not r.get("unavailable"):
                            broken.append("%s %s delivered nothing" % (tag, name))
        if want_("tls"):
            for (sess, n, resume) in cfg["tls"]:
                key = ("tls", sess, n, resume)
                for i in range(cfg["pairs"]):
                    for name in order:
                        if not ctx.relay_ok[name]:
                            continue
                        tag = "tls-%d-%s-%d" % (sess, "resume" if resume else "full", i + 1)
                        r = run_tls(ctx, name, sess, n, resume, tag)
                        add(key, name, r)
                        log("%s %s: %s handshakes/s (%s resumed), %s msgs/s, e2e %s/s, "
                            "delivered %d/%d, %d errors%s" % (
                                tag, name, fmt(r["hs_rate"]),
                                fmt(r["resumed_share"] and 100 * r["resumed_share"], "%"),
                                fmt(r["msg_rate"]), fmt(r["e2e_rate"]), r["delivered"], n,
                                r["errors"], " (%s)" % r["error_sample"]
                                if r.get("error_sample") else ""))
                        if r["delivered"] == 0:
                            broken.append("%s %s delivered nothing (%s)" % (
                                tag, name, r.get("error_sample")))
        if want_("idle"):
            for n in cfg["idle"]:
                for i in range(cfg["pairs"]):
                    for name in order:
                        r = run_idle(ctx, name, n, "idle-%d-%d" % (n, i + 1))
                        add(("idle", n), name, r)
                        log("idle %d %s: served %d refused %d no-answer %d, RSS %.1f MiB, "
                            "PSS %.1f MiB, %d processes" % (
                                n, name, r["served"], r["refused"],
                                r["no_answer"] + r["connect_failed"], r["rss"] / 1048576.0,
                                r["pss"] / 1048576.0, r["procs"]))
                        if r["served"] == 0:
                            broken.append("idle %d %s served nothing" % (n, name))
        lkind = "relay" if ctx.relay_ok["kurier"] else "local"
        ctx.latency_kind = lkind
        if want_("latency"):
            for i in range(cfg["pairs"]):
                r = run_latency_floor(ctx)
                add(("latency",), "floor", r)
                log("latency floor (client into smtp-sink): p50 %s ms p99 %s ms" % (
                    fmt(r["p50"] and r["p50"] * 1000, "", 2),
                    fmt(r["p99"] and r["p99"] * 1000, "", 2)))
                for name in order:
                    r = run_latency(ctx, name, lkind, "latency-%d" % (i + 1))
                    add(("latency",), name, r)
                    log("latency %s: p50 %s ms p99 %s ms (%d messages, %d errors); own "
                        "flush p50 %s p99 %s ms, beyond it p50 %s p99 %s ms%s" % (
                            name, fmt(r["p50"] and r["p50"] * 1000, "", 2),
                            fmt(r["p99"] and r["p99"] * 1000, "", 2), r["n"], r["errors"],
                            fmt(r.get("flush_p50") and r["flush_p50"] * 1000, "", 2),
                            fmt(r.get("flush_p99") and r["flush_p99"] * 1000, "", 2),
                            fmt(r.get("rest_p50") and r["rest_p50"] * 1000, "", 2),
                            fmt(r.get("rest_p99") and r["rest_p99"] * 1000, "", 2),
                            " (not traced: %s)" % r["trace_error"] if r.get("trace_error")
                            else ""))
                    if r["n"] == 0:
                        broken.append("latency %s: no message accepted (%s)" % (
                            name, r.get("error_sample")))
        if want_("durability"):
            for kind in ("relay", "local"):
                for name in order:
                    if kind == "relay" and not ctx.relay_ok[name]:
                        continue
                    r = run_durability(ctx, name, kind, "durability-%s" % kind)
                    add(("durability", kind), name, r)
                    log("durability %s %s: %.2f fsync-family calls per message %s" % (
                        kind, name, r["per_msg"], r["calls"]))
                    if not r["calls"] and r["delivered"] == 0:
                        broken.append("durability %s %s: no fsync and nothing delivered" % (
                            kind, name))
        if want_("spool") and args.spoolproto:
            r = run_spoolproto(ctx, os.path.abspath(args.spoolproto))
            add(("spoolproto",), "proto", r)
            log("spoolproto: %d lines" % len(r["table"].splitlines()))
        text = report(ctx, mach, res, started, time.time() - t_start, args.smoke)
        with open(out, "w") as f:
            f.write(text)
        log("wrote %s (%.0f s)" % (out, time.time() - t_start))
        if broken:
            log("HARNESS BROKE: " + "; ".join(broken))
            rc = 1
    except HarnessError as e:
        log("error: %s" % e)
        rc = 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
        # leave the machine's own Postfix stopped
        if subprocess.run(["postfix", "status"], capture_output=True).returncode == 0:
            log("the machine's default Postfix instance is running; stopping it")
            subprocess.run(["postfix", "stop"], capture_output=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
