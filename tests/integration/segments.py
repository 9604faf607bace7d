"""Read and write the spool's segment files (src/queue/segment.h) from tests: what
is on disk after a crash, a torn or garbled record, an envelope written by hand."""
import os
import struct

HDR = 40
MAGIC = b"KQR1"


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _table()


def crc32c(data, crc=0):
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def record(kind, qid, payload=b""):
    """One record: kind b"C" content, b"E" envelope, b"R" removed."""
    head = MAGIC + kind + b"\0\0\0" + struct.pack("<II", len(payload), crc32c(payload))
    head += qid.encode().ljust(16, b"\0")
    return head + struct.pack("<I", crc32c(head)) + b"\0\0\0\0" + payload


def queue_dir(spool):
    return os.path.join(spool, "queue")


def files(spool):
    """The segment files, oldest first."""
    q = queue_dir(spool)
    return [os.path.join(q, n) for n in sorted(os.listdir(q)) if n.endswith(".seg")]


def records(path):
    """(offset, kind, id, payload) of each good record of one segment, up to the
    first zero or bad header, as kurierd reads them."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    off = 0
    while off + HDR <= len(data):
        h = data[off:off + HDR]
        if h == b"\0" * HDR or h[:4] != MAGIC:
            break
        n, pcrc = struct.unpack("<II", h[8:16])
        if struct.unpack("<I", h[32:36])[0] != crc32c(h[:32]) or off + HDR + n > len(data):
            break
        payload = data[off + HDR:off + HDR + n]
        if crc32c(payload) != pcrc:
            break
        out.append((off, h[4:5], h[16:30].decode(), payload))
        off += HDR + n
    return out


def messages(spool):
    """{id: (content, envelope text)} of the queued messages."""
    msgs = {}
    for path in files(spool):
        for _, kind, qid, payload in records(path):
            if kind == b"C":
                msgs[qid] = [payload, None]
            elif kind == b"E" and qid in msgs:
                msgs[qid][1] = payload
            elif kind == b"R":
                msgs.pop(qid, None)
    return {k: (v[0], v[1].decode()) for k, v in msgs.items() if v[1] is not None}


def append_segment(spool, data):
    """Write data as a new segment after the last one (the daemon stopped)."""
    last = files(spool)
    no = int(os.path.basename(last[-1])[:10]) + 1 if last else 1
    path = os.path.join(queue_dir(spool), "%010d.seg" % no)
    with open(path, "wb") as f:
        f.write(data)
    return path


def written_end(path):
    """Where the records of a segment end (the rest is preallocated zeros)."""
    recs = records(path)
    if not recs:
        return 0
    off, _, _, payload = recs[-1]
    return off + HDR + len(payload)
