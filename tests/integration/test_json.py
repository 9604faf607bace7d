#!/usr/bin/python3
"""--json outputs (docs/json.md): every list prints one JSON object per line, every
show/status one object, with the documented field names, parsed here by Python's json
module; the text output stays as it was."""

import json
import os

from conftest import BUILD
from test_queue_tools import REMOTE, dead_port, queued, relay  # noqa: F401 (fixtures)

MAILQ = os.path.join(BUILD, "mailq")


def lines(r):
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return [json.loads(l) for l in r.stdout.decode().splitlines()]


def test_queue_list_show_and_mailq_json(relay):
    assert lines(relay.cli("queue", "list", "--json")) == []  # empty queue: no line
    q1 = queued(relay, "one")
    q2 = queued(relay, "two", rcpts=(REMOTE, "other@remote.test"))
    relay.cli("queue", "hold", q2)
    got = {m["id"]: m for m in lines(relay.cli("queue", "list", "--json"))}
    assert set(got) == {q1, q2}
    m = got[q2]
    assert m["sender"] == "alice@example.test" and m["held"] is True
    assert m["corrupt"] is False and m["auth_user"] is None
    assert isinstance(m["size"], int) and m["size"] > 0
    assert m["arrival"].endswith("Z")
    assert [r["address"] for r in m["recipients"]] == [REMOTE, "other@remote.test"]
    r = got[q1]["recipients"][0]
    assert r["state"] == "queued" and r["attempts"] >= 1
    assert r["dsn"] == "4.4.1" and "Connection refused" in r["diag"]
    assert set(r) == {"address", "state", "attempts", "last_try", "next_try", "dsn", "diag"}
    # mailq --json and kurier mailq --json print the same objects
    assert {m["id"] for m in lines(relay.cli("--json", prog=MAILQ))} == {q1, q2}
    assert {m["id"] for m in lines(relay.cli("mailq", "--json"))} == {q1, q2}
    # --account filters as in the text listing
    assert lines(relay.cli("queue", "list", "--account", "nobody@example.test", "--json")) == []

    show = lines(relay.cli("queue", "show", "--json", q1))
    assert len(show) == 1
    s = show[0]
    assert s["id"] == q1 and s["helo"] == "client.example" and s["proto"] == "ESMTP"
    assert s["client_addr"] == "127.0.0.1" and s["held"] is False
    assert s["recipients"][0]["original"] == REMOTE
    assert s["recipients"][0]["relay"] is None or isinstance(s["recipients"][0]["relay"], str)
    # the text outputs are unchanged
    assert q1 in relay.cli("queue", "list").stdout.decode()


def test_json_where_it_makes_no_sense_is_a_usage_error(relay):
    r = relay.cli("queue", "flush", "--json", check=False)
    assert r.returncode == 2 and b"--json" in r.stderr
    r = relay.cli("queue", "show", "--body", "--json", "X", check=False)
    assert r.returncode == 2
    r = relay.cli("domain", "add", "x.test", "--json", check=False)
    assert r.returncode == 2 and b"--json" in r.stderr


def test_directory_lists_json(kurier_factory):
    k = kurier_factory()
    k.add_domain("example.test")
    k.add_domain("other.test")
    k.cli("domain", "catchall", "other.test", "info")
    k.add_mailbox("demo@example.test", quota="100M")
    k.add_mailbox("bob@other.test")
    k.cli("alias", "add", "sales@example.test", "demo@example.test")
    k.cli("relay", "add", "@example.test", "smtp.provider.test:587", "--user", "u",
          "--password-stdin", input=b"sekrit\n")
    doms = {d["domain"]: d for d in lines(k.cli("domain", "list", "--json"))}
    assert doms["example.test"] == {"domain": "example.test", "catchall": None,
                                    "binding": doms["example.test"]["binding"]}
    assert doms["other.test"]["catchall"] == "info"
    boxes = lines(k.cli("mailbox", "list", "--json"))
    assert {"address": "demo@example.test", "quota": 100 * 1024 * 1024} in boxes
    assert {"address": "bob@other.test", "quota": 0} in boxes
    assert lines(k.cli("mailbox", "list", "other.test", "--json")) == [
        {"address": "bob@other.test", "quota": 0}]
    assert lines(k.cli("alias", "list", "--json")) == [
        {"source": "sales@example.test", "target": "demo@example.test"}]
    routes = lines(k.cli("relay", "list", "--json"))
    assert len(routes) == 1
    assert routes[0]["match"] == "@example.test" and routes[0]["username"] == "u"
    assert routes[0]["password"] is True and "sekrit" not in json.dumps(routes)
    assert routes[0]["hosts"] == "smtp.provider.test:587"


def test_status_commands_json_on_empty_state(kurier_factory):
    k = kurier_factory()
    k.add_domain("example.test")
    assert lines(k.cli("monitor", "status", "--json")) == []
    assert lines(k.cli("monitor", "history", "--json")) == []
    assert lines(k.cli("complaints", "list", "--json")) == []
    assert lines(k.cli("greylist", "list", "--json")) == []


def test_auth_blocks_json(kurier_factory):
    """auth blocks --json: one object per block, nothing when there are none."""
    from test_auth_limits import auth
    k = kurier_factory(listen_extra="    auth on;\n    auth_plaintext on;\n",
                       extra="auth {\n    max_failures 3;\n    delay_max 0s;\n"
                             "    block_time 1h;\n}\n")
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.start()
    assert lines(k.cli("auth", "blocks", "--json")) == []
    for i in range(3):
        auth(k, "demo@example.test", "wrong%d" % i, "127.0.0.2")
    got = lines(k.cli("auth", "blocks", "--json"))
    assert len(got) == 1
    b = got[0]
    assert (b["address"], b["account"], b["failures"]) == ("127.0.0.2", "demo@example.test", 3)
    assert 0 < b["blocked_for"] <= 3600
    r = k.cli("auth", "blocks", "--clear", "127.0.0.2", "--json", check=False)
    assert r.returncode == 2
