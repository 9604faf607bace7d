#!/usr/bin/python3
"""Run OpenDKIM's opendkim-testmsg against the test DNS. libopendkim asks the system
resolver (/etc/resolv.conf, port 53) and cannot be pointed elsewhere, so this script
runs in its own network and mount namespaces (started by "unshare -nm"): loopback up,
a resolv.conf naming 127.0.0.1 bound over the real one (only in this namespace), the
loopback DNS server of spfdns.py on port 53 serving the zone given as JSON, then
opendkim-testmsg with the message on stdin. Exits with opendkim-testmsg's status and
passes its output through.

usage: unshare -nm dkim_ns.py ZONE.json MESSAGE"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spfdns import SpfDNS  # noqa: E402


def main():
    zone_file, msg_file = sys.argv[1], sys.argv[2]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    fd, resolv = tempfile.mkstemp(prefix="dkim-ns-resolv-")
    os.write(fd, b"nameserver 127.0.0.1\noptions attempts:1 timeout:5\n")
    os.close(fd)
    os.chmod(resolv, 0o644)
    subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)
    with open(zone_file) as f:
        zone = json.load(f)
    dns = SpfDNS(53)
    dns.load(zone)
    dns.start()
    try:
        with open(msg_file, "rb") as f:
            r = subprocess.run(["opendkim-testmsg"], stdin=f, capture_output=True, timeout=60)
        sys.stdout.write(r.stdout.decode(errors="replace"))
        sys.stdout.write(r.stderr.decode(errors="replace"))
        return r.returncode
    finally:
        dns.stop()
        os.unlink(resolv)


if __name__ == "__main__":
    sys.exit(main())
