#!/usr/bin/python3
"""clients.py: the bench's own asyncio SMTP clients: many idle sessions (banner + EHLO,
then held open) and an open-loop latency probe (end of DATA -> 250)."""

import asyncio
import time


async def _reply(reader):
    """One whole SMTP reply; returns its code (int), or raises EOFError."""
    while True:
        line = await reader.readline()
        if not line:
            raise EOFError
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3])


async def _idle_one(port, sem, conns, stats, connect_timeout, reply_timeout):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                          connect_timeout)
        except (OSError, asyncio.TimeoutError):
            stats["connect_failed"] += 1
            return
    try:
        code = await asyncio.wait_for(_reply(r), reply_timeout)
        if code != 220:
            stats["refused"] += 1
            w.close()
            return
        w.write(b"EHLO idle.client.test\r\n")
        code = await asyncio.wait_for(_reply(r), reply_timeout)
        if code != 250:
            stats["refused"] += 1
            w.close()
            return
        stats["served"] += 1
        conns.append(w)
    except asyncio.TimeoutError:
        stats["no_answer"] += 1
        conns.append(w)  # keep it: it may sit in the listen queue; closed at the end
    except (EOFError, OSError, ValueError):
        stats["refused"] += 1
        w.close()


async def _idle(port, n, measure, hold, connect_timeout, reply_timeout, parallel):
    stats = {"served": 0, "refused": 0, "no_answer": 0, "connect_failed": 0}
    conns = []
    sem = asyncio.Semaphore(parallel)
    t0 = time.time()
    await asyncio.gather(*(_idle_one(port, sem, conns, stats, connect_timeout, reply_timeout)
                           for _ in range(n)))
    stats["open_seconds"] = time.time() - t0
    await asyncio.sleep(hold)
    stats.update(measure())
    for w in conns:
        w.close()
    await asyncio.sleep(0.2)
    return stats


def idle_sessions(port, n, measure, hold=1.0, connect_timeout=5.0, reply_timeout=10.0,
                  parallel=2000):
    """Open n connections, read the banner, EHLO, keep them open; call measure() (returns
    a dict) while all are held; close all. Returns counts: served (220 + 250 EHLO),
    refused (other code, reset or close), no_answer (no reply in reply_timeout),
    connect_failed (no TCP connection in connect_timeout), plus measure()'s keys."""
    return asyncio.run(_idle(port, n, measure, hold, connect_timeout, reply_timeout,
                             parallel))


async def _lat_session(port, count, interval, start, mail_from, rcpt, body, out, errors, spans):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        if await _reply(r) != 220:
            raise EOFError
        w.write(b"EHLO latency.client.test\r\n")
        await _reply(r)
        loop = asyncio.get_running_loop()
        for i in range(count):
            due = start + i * interval
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            for cmd, want in ((b"MAIL FROM:<%s>\r\n" % mail_from, 250),
                              (b"RCPT TO:<%s>\r\n" % rcpt, 250), (b"DATA\r\n", 354)):
                w.write(cmd)
                code = await asyncio.wait_for(_reply(r), 30)
                if code != want:
                    raise RuntimeError("%s got %d" % (cmd.strip().decode(), code))
            w.write(body)
            await w.drain()
            t0 = time.perf_counter()
            w.write(b".\r\n")
            code = await asyncio.wait_for(_reply(r), 30)
            t1 = time.perf_counter()
            if code != 250:
                raise RuntimeError("end of data got %d" % code)
            out.append(t1 - t0)
            spans.append((t0, t1))
        w.write(b"QUIT\r\n")
        await asyncio.wait_for(_reply(r), 10)
        w.close()
    except Exception as e:  # counted, not fatal: the report shows it
        errors.append("%s: %s" % (type(e).__name__, e))


async def _latency(port, sessions, total, rate, size, mail_from, rcpt, spans):
    line = b"x" * 76 + b"\r\n"
    body = (b"From: <%s>\r\nTo: <%s>\r\nSubject: latency probe\r\n\r\n" % (mail_from, rcpt)
            + line * max(1, size // len(line)))
    out, errors = [], []
    per = total // sessions
    interval = sessions / float(rate)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    await asyncio.gather(*(_lat_session(port, per, interval, start + k * interval / sessions,
                                        mail_from, rcpt, body, out, errors, spans)
                           for k in range(sessions)))
    return out, errors


def latency(port, sessions, total, rate, size, mail_from, rcpt, spans=None):
    """Open-loop probe: `sessions` connections together offer `rate` messages/s, `total`
    messages of about `size` bytes. Returns (list of end-of-DATA -> 250 seconds,
    list of error strings). spans, a list, gets each message's (end of DATA sent,
    250 read) in time.perf_counter() seconds (CLOCK_MONOTONIC, as the kernel's trace
    clock "mono")."""
    return asyncio.run(_latency(port, sessions, total, rate, size, mail_from.encode(),
                                rcpt.encode(), spans if spans is not None else []))


# --- STARTTLS load: one SMTP session per message, STARTTLS on every session -------------
#
# smtp-source has no TLS, so this is the load tool of the STARTTLS scenario. Blocking
# sockets in threads: OpenSSL's handshake, read and write run without the GIL. bench.py
# starts one such process per core (`clients.py tls ...`), each with its share of the
# sessions and messages; each prints one JSON line.

def _tls_reply(f):
    while True:
        line = f.readline()
        if not line:
            raise EOFError("connection closed")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), line


def _tls_session_loop(port, count, ctx, resume, body, mail_from, rcpt, st, lock):
    import socket
    session = None
    for _ in range(count):
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            try:
                f = raw.makefile("rb")
                if _tls_reply(f)[0] != 220:
                    raise RuntimeError("no 220 banner")
                raw.sendall(b"EHLO tls.client.test\r\n")
                lines = []  # the EHLO reply must offer STARTTLS
                while True:
                    line = f.readline()
                    if not line:
                        raise EOFError("closed after EHLO")
                    lines.append(line)
                    if len(line) < 4 or line[3:4] != b"-":
                        break
                if not any(b"STARTTLS" in x.upper() for x in lines):
                    raise RuntimeError("STARTTLS not offered")
                raw.sendall(b"STARTTLS\r\n")
                if _tls_reply(f)[0] != 220:
                    raise RuntimeError("STARTTLS refused")
                f.close()
                t0 = time.perf_counter()
                s = ctx.wrap_socket(raw, session=session if resume else None)
                hs = time.perf_counter() - t0
                f = s.makefile("rb")
                for cmd, want in ((b"EHLO tls.client.test\r\n", 250),
                                  (b"MAIL FROM:<%s>\r\n" % mail_from, 250),
                                  (b"RCPT TO:<%s>\r\n" % rcpt, 250), (b"DATA\r\n", 354)):
                    s.sendall(cmd)
                    code = _tls_reply(f)[0]
                    if code != want:
                        raise RuntimeError("%s got %d" % (cmd.split()[0].decode(), code))
                s.sendall(body + b".\r\n")
                code = _tls_reply(f)[0]
                if code != 250:
                    raise RuntimeError("end of data got %d" % code)
                s.sendall(b"QUIT\r\n")
                try:
                    _tls_reply(f)
                except (EOFError, OSError):
                    pass
                with lock:
                    st["messages"] += 1
                    st["handshakes"] += 1
                    st["resumed"] += 1 if s.session_reused else 0
                    st["handshake_s"] += hs
                    st.setdefault("version", s.version())
                    st.setdefault("cipher", s.cipher()[0])
                if resume and s.session is not None:
                    session = s.session
                try:
                    f.close()
                    s.close()
                except OSError:
                    pass
            finally:
                raw.close()
        except Exception as e:  # counted, not fatal: the report shows it
            with lock:
                st["errors"] += 1
                st.setdefault("error_sample", "%s: %s" % (type(e).__name__, e))


def tls_load(port, n, sessions, size, mail_from, rcpt, resume):
    """sessions threads, n messages in all, each in its own SMTP session with STARTTLS
    (TLS 1.3 only; ECDHE key exchange, the only kind TLS 1.3 has), offering the previous
    session's ticket when resume. The certificate is not checked (self-signed; the same
    for both MTAs). Returns counts and the seconds until all threads were done."""
    import ssl
    import threading
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    line = b"x" * 76 + b"\r\n"
    body = (b"From: <%s>\r\nTo: <%s>\r\nSubject: tls bench\r\n\r\n" % (mail_from, rcpt)
            + line * max(1, size // len(line)))
    st = {"messages": 0, "handshakes": 0, "resumed": 0, "handshake_s": 0.0, "errors": 0}
    lock = threading.Lock()
    per = [n // sessions + (1 if i < n % sessions else 0) for i in range(sessions)]
    ths = [threading.Thread(target=_tls_session_loop, args=(
        port, k, ctx, resume, body, mail_from, rcpt, st, lock), daemon=True)
        for k in per if k]
    st["t_start"] = time.time()  # wall clock: bench.py lines the processes up with it
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join(600)
    st["seconds"] = time.perf_counter() - t0
    return st


if __name__ == "__main__":
    import json
    import sys
    if len(sys.argv) != 9 or sys.argv[1] != "tls":
        sys.exit("usage: clients.py tls PORT N SESSIONS SIZE FROM RCPT RESUME(0|1)")
    a = sys.argv[2:]
    print(json.dumps(tls_load(int(a[0]), int(a[1]), int(a[2]), int(a[3]), a[4].encode(),
                              a[5].encode(), a[6] == "1")))
