#!/usr/bin/python3
"""Client names: kurierd looks up the PTR of each client and trusts the name only
when its A record leads back (forward-confirmed), before the greeting, as Postfix
does. The name shows in the log and in our Received: header. A real unbound serves
the test zones; clients connect from several 127.0.0.x addresses."""

import socket

import peers

ZONES = """
    local-zone: "test." nodefault
    local-zone: "clients.test." static
    local-data: "good.clients.test. 60 IN A 127.0.0.7"
    local-data: "liar.clients.test. 60 IN A 127.0.0.99"
    local-zone: "0.0.127.in-addr.arpa." static
    local-data-ptr: "127.0.0.7 good.clients.test"
    local-data-ptr: "127.0.0.8 liar.clients.test"
    local-zone: "." static
"""


def session_from(k, source):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", k.port))
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    return s, f


def test_client_names_are_forward_confirmed(kurier_factory):
    with peers.unbound(ZONES, "clients.test") as resolver:
        k = kurier_factory(extra="resolver %s;\n" % resolver, reverse_dns=True)
        k.add_domain("example.test")
        k.add_mailbox("demo@example.test")
        k.start()
        # confirmed: PTR good.clients.test, whose A is 127.0.0.7
        s, f = session_from(k, "127.0.0.7")
        s.sendall(b"EHLO good.example\r\nMAIL FROM:<a@remote.test>\r\n"
                  b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        for _ in range(4):
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
        s.sendall(b"Subject: named\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert f.readline().startswith(b"250 ")
        s.close()
        k.wait_log("connect from good.clients.test[127.0.0.7]")
        body = open(k.wait_mail("demo@example.test")[0], "rb").read()
        assert b"(good.clients.test [127.0.0.7])" in body
        # a PTR whose name points elsewhere is not believed
        s, f = session_from(k, "127.0.0.8")
        s.close()
        k.wait_log("connect from unknown[127.0.0.8]")
        # no PTR at all
        s, f = session_from(k, "127.0.0.9")
        s.close()
        k.wait_log("connect from unknown[127.0.0.9]")
        assert "liar.clients.test[" not in k.log()


def test_early_talker_waits_for_the_lookup(kurier_factory):
    """Commands sent before the greeting are answered after it, in order."""
    with peers.unbound(ZONES, "clients.test") as resolver:
        k = kurier_factory(extra="resolver %s;\n" % resolver, reverse_dns=True)
        k.add_domain("example.test")
        k.start()
        s = socket.socket()
        s.bind(("127.0.0.7", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", k.port))
        s.sendall(b"EHLO early.example\r\nQUIT\r\n")
        data = b""
        while b"221 " not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        lines = data.decode().split("\r\n")
        assert lines[0].startswith("220 mx.example.test")
        assert lines[1].startswith("250-mx.example.test")
        assert any(l.startswith("221 ") for l in lines)
