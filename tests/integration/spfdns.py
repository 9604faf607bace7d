#!/usr/bin/python3
"""A DNS server on loopback for the SPF test suite (tests/data/spf/): serves exactly
one section's zonedata at a time, as the suite's README says a driver must: TXT made
of several strings, SPF (type 99) copied to TXT when a name has no TXT, NONE as no
record, TIMEOUT as a query that gets no answer, SERVFAIL as a SERVFAIL answer,
unlisted names NXDOMAIN. Built on
Debian's python3-dnslib; UDP and TCP on one port, served from threads."""

import contextlib
import threading

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSLabel
from dnslib.dns import DNSError
from dnslib.server import BaseResolver, DNSLogger, DNSServer

SPF_TYPE = 99


def _key(name):
    """Owner names compare by lower-cased labels (they may hold spaces and %)."""
    if isinstance(name, DNSLabel):
        return tuple(l.lower() for l in name.label)
    return tuple(l.lower() for l in name.rstrip(".").encode().split(b".") if l)


def _strings(value):
    if value is None:
        return None
    if isinstance(value, list):
        return [v.encode("utf-8") for v in value]
    return [str(value).encode("utf-8")]


class Zone:
    """One section's zonedata: key -> {"timeout": bool, "rr": [(qtype, rdata)]}."""

    def __init__(self, zonedata):
        self.names = {}
        for name, items in (zonedata or {}).items():
            ent = self.names.setdefault(_key(name),
                                        {"timeout": False, "servfail": False, "rr": []})
            has_txt = any(isinstance(i, dict) and "TXT" in i for i in items)
            for item in items:
                if item == "TIMEOUT":
                    ent["timeout"] = True
                    continue
                if item == "SERVFAIL":
                    ent["servfail"] = True
                    continue
                (typ, val), = item.items()
                if val == "NONE":
                    ent["rr"].append((typ, None))
                    continue
                if typ in ("TXT", "SPF"):
                    rd = TXT(_strings(val))
                    if typ == "SPF":
                        ent["rr"].append((SPF_TYPE, rd))
                        if not has_txt:
                            ent["rr"].append((QTYPE.TXT, rd))
                    else:
                        ent["rr"].append((QTYPE.TXT, rd))
                elif typ == "A":
                    ent["rr"].append((QTYPE.A, A(val)))
                elif typ == "AAAA":
                    ent["rr"].append((QTYPE.AAAA, AAAA(val)))
                elif typ == "MX":
                    pref, host = val
                    ent["rr"].append((QTYPE.MX, MX(host or ".", pref)))
                elif typ == "PTR":
                    ent["rr"].append((QTYPE.PTR, PTR(val)))
                elif typ == "CNAME":
                    ent["rr"].append((QTYPE.CNAME, CNAME(val)))
                else:
                    raise ValueError("unknown record type %r" % typ)


class _Resolver(BaseResolver):
    def __init__(self):
        self.zone = Zone({})
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        with self.lock:
            zone = self.zone
        reply = request.reply()
        reply.header.ra = 1
        qname, qtype = request.q.qname, request.q.qtype
        name = qname
        for _ in range(8):  # follow CNAMEs inside the zone
            ent = zone.names.get(_key(name))
            if ent is None:
                if not reply.rr:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply
            if ent["servfail"]:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            rrs = [(t, rd) for t, rd in ent["rr"] if rd is not None]
            if ent["timeout"] and not any(t == qtype for t, _ in ent["rr"]):
                raise DNSError("TIMEOUT entry: no answer")
            cname = [rd for t, rd in rrs if t == QTYPE.CNAME]
            if cname and qtype != QTYPE.CNAME:
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=cname[0], ttl=0))
                name = cname[0].label
                continue
            for t, rd in rrs:
                if t == qtype:
                    reply.add_answer(RR(name, t, rdata=rd, ttl=0))
            return reply
        return reply


class _QuietLogger(DNSLogger):
    def __init__(self):
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data")


class SpfDNS:
    """The server on 127.0.0.1:port (UDP and TCP). load(zonedata) switches section."""

    def __init__(self, port):
        self.port = port
        self.resolver = _Resolver()
        logger = _QuietLogger()
        self.udp = DNSServer(self.resolver, address="127.0.0.1", port=port, logger=logger)
        self.tcp = DNSServer(self.resolver, address="127.0.0.1", port=port, tcp=True,
                             logger=logger)

    def load(self, zonedata):
        zone = Zone(zonedata)
        with self.resolver.lock:
            self.resolver.zone = zone

    def start(self):
        self.udp.start_thread()
        self.tcp.start_thread()

    def stop(self):
        self.udp.stop()
        self.tcp.stop()
        self.udp.server.server_close()
        self.tcp.server.server_close()


@contextlib.contextmanager
def serving(zonedata):
    """A started SpfDNS on a free loopback port serving zonedata; stopped after."""
    from conftest import free_port
    srv = SpfDNS(free_port())
    srv.load(zonedata)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
