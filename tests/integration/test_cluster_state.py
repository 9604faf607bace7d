#!/usr/bin/python3
"""Three kurier nodes sharing their policy state in one real redis-server (issue 18,
docs/cluster.md): a greylist passed on one node holds on the others; an account's rate
limit is counted across the nodes (a burst split over them is cut at the limit
exactly once) and the lock it ends in is seen by every node; AUTH failures add up
across the nodes; an egress bench set on one node is seen by all; every key has a TTL
where its data expires; with Redis killed the nodes keep serving with the documented
fail modes (greylisting fails open, a locked account's AUTH is still refused) and
converge again when it is back (empty); kill -9 of one node loses none of the
others' mail. The three nodes listen on three loopback addresses (127.0.0.11, .12,
.13: NODE_HOSTS), each with its own state folder, spool and directory file."""

import concurrent.futures
import json
import os
import socket
import threading
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
import urllib.request

import pytest

import peers
from conftest import SAFETY, free_port, wait_port

ZONES = r"""
    local-zone: "good.test." static
    local-data: "good.test. 60 IN MX 10 mx.good.test."
    local-data: "mx.good.test. 60 IN A 127.0.0.20"
    local-zone: "." static
"""

USERS = ("burst", "legit", "guessed", "steady", "other")
NODE_HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")


class Redis:
    """A redis-server on a free loopback port with its own folder, no persistence:
    a restart comes back empty, as a Redis that lost its data does."""

    def __init__(self, password=None):
        self.dir = tempfile.mkdtemp(prefix="kurier-redis-")
        self.port = free_port()
        self.proc = None
        self.password = password

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--protected-mode", "no",
             "--enable-debug-command", "yes",
             "--logfile", os.path.join(self.dir, "redis.log")] +
            (["--requirepass", self.password] if self.password else []),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port)
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cli(self, *args):
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        r = subprocess.run(["redis-cli", "-p", str(self.port), *auth, *args],
                           capture_output=True, timeout=SAFETY, check=True)
        return r.stdout.decode()

    def keys(self, pattern):
        """Our keys hold 0x1f between their parts (Python's split() takes it for
        whitespace): one a line."""
        return [k for k in self.cli("--scan", "--pattern", pattern).split("\n") if k]

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def dns():
    with peers.unbound(ZONES, "good.test") as addr:
        yield addr


@pytest.fixture
def redis():
    r = Redis().start()
    yield r
    r.cleanup()


ABUSE = "    soft_messages_per_hour 5;\n    hard_messages_per_hour 8;\n"


def node_conf(dns, redis_port, sink_port, abuse=ABUSE):
    return (
        "resolver %s;\n"
        "relay_host 127.0.0.1:%d;\n"
        "state {\n    backend redis;\n    servers 127.0.0.1:%d;\n    timeout_ms 300;\n"
        "    refresh 1s;\n}\n"
        "greylist {\n    delay 2s;\n}\n"
        "abuse {\n%s}\n"
        "auth {\n    max_failures 3;\n    delay_max 1s;\n}\n"
        "egress pool main {\n    source 127.0.0.2;\n}\n" % (dns, sink_port, redis_port, abuse))


@pytest.fixture
def cluster(kurier_factory, dns, redis):
    return make_cluster(kurier_factory, dns, redis)


def make_cluster(kurier_factory, dns, redis, abuse=ABUSE):
    """Three running nodes (MX listener with greylisting always, a plaintext-AUTH
    submission listener) sharing redis; relay_host is a port where nothing listens, so
    relayed mail stays queued. abuse: the abuse { } block's lines."""
    sink = free_port()
    nodes = []
    for host in NODE_HOSTS:
        metrics_port = free_port()
        k = kurier_factory(extra=node_conf(dns, redis.port, sink, abuse) +
                           "metrics_listen %d;\n" % metrics_port,
                           listen_extra="    greylist always;\n", host=host)
        k.metrics_port = metrics_port
        k.sub_port = free_port(host)
        with open(k.conf, "a") as f:
            f.write("listen %s:%d {\n    role submission;\n    auth_plaintext on;\n}\n"
                    % (host, k.sub_port))
        nodes.append(k)

    def prepare(k):
        k.add_domain("example.test")
        k.add_mailbox("demo@example.test", "demo")
        for user in USERS:
            k.add_mailbox("%s@example.test" % user, user + "-pw")

    # each node's CLI calls, then its start, beside the other nodes' (its own folder)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        list(pool.map(prepare, nodes))
        list(pool.map(lambda k: k.start(), nodes))
    return nodes


def attempt(k, sender, rcpt="demo@example.test"):
    """One delivery attempt at k's MX listener from 127.0.0.5: RCPT's (code, text); the
    message is sent when accepted."""
    with smtplib.SMTP(k.host, k.port, timeout=SAFETY, source_address=("127.0.0.5", 0)) as s:
        s.ehlo("client.test")
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        code, text = s.rcpt(rcpt)
        if code == 250:
            dcode, dtext = s.data(b"Subject: cluster\r\n\r\nbody\r\n")
            assert dcode == 250, (dcode, dtext)
        return code, text.decode()


def wait_for(pred, what, nodes):
    deadline = time.time() + SAFETY
    while not pred():
        if time.time() > deadline:
            raise AssertionError("%s never happened; logs:\n%s" % (
                what, "\n----\n".join(k.log()[-2000:] for k in nodes)))
        time.sleep(0.1)


def login(k, user, password=None):
    """A logged-in submission session, or the SMTPAuthenticationError's (code, text)."""
    s = smtplib.SMTP(k.host, k.sub_port, timeout=SAFETY)
    try:
        s.ehlo("client.example.test")
        # PLAIN only: smtplib's login() tries the next mechanism after a failure
        s.user, s.password = user, password or user.split("@")[0] + "-pw"
        s.auth("PLAIN", s.auth_plain)
    except smtplib.SMTPAuthenticationError as e:
        s.close()
        return (e.smtp_code, e.smtp_error.decode())
    except Exception:
        s.close()
        raise
    return s


def auth_answer(k, user, password=None):
    """250-ish 235 when AUTH works (session closed again), else (code, text)."""
    r = login(k, user, password)
    if isinstance(r, tuple):
        return r
    r.quit()
    return (235, "")


def send_one(k, user, rcpt, subject="hello"):
    """One message over a new session at k: 250, or the refusal's code (and text)."""
    s = login(k, user)
    assert not isinstance(s, tuple), s
    try:
        s.sendmail(user, [rcpt], ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n"
                                  % (user, rcpt, subject)).encode())
        return 250, ""
    except smtplib.SMTPSenderRefused as e:
        return e.smtp_code, e.smtp_error.decode()
    finally:
        s.close()


def metrics(k):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % k.metrics_port,
                                timeout=SAFETY) as r:
        return r.read().decode()


def locked_everywhere(nodes, user):
    return all(auth_answer(k, user)[0] == 535 for k in nodes)


def test_greylist_passed_on_one_node_holds_on_the_others(cluster, redis):
    a, b, c = cluster
    code, text = attempt(a, "first@good.test")
    assert code == 451 and "Greylisted" in text, (code, text)
    # the client retries at another MX: B knows the triplet (its delay runs from A's
    # refusal) and takes the retry once the delay is over
    deadline = time.time() + SAFETY
    while True:
        code, text = attempt(b, "first@good.test")
        if code == 250:
            break
        assert code == 451 and "Greylisted" in text, (code, text)
        assert time.time() < deadline, b.log()[-3000:]
        time.sleep(0.5)
    b.wait_log("passed client=[127.0.0.5] net=127.0.0.0/24 from=<first@good.test>")
    # C never saw it: it passes there at once
    assert attempt(c, "first@good.test")[0] == 250
    # greylisting is on at C all the same: a new triplet waits
    assert attempt(c, "second@good.test")[0] == 451
    b.wait_mail("demo@example.test")
    c.wait_mail("demo@example.test")
    assert a.maildir_new("demo@example.test") == []
    # kurier greylist list on A (the CLI reads Redis as well)
    lines = a.cli("greylist", "list", "--json").stdout.decode().splitlines()
    states = {(t["sender"], t["state"]) for t in map(json.loads, lines) if t["kind"] == "triplet"}
    assert states == {("first@good.test", "passed"), ("second@good.test", "greylisted")}, lines
    # every greylisting key expires
    keys = redis.keys("kurier:grey:*")
    assert keys
    for key in keys:
        assert int(redis.cli("TTL", key)) > 0, key


def test_rate_limit_counted_across_nodes_and_the_lock_seen_by_all(cluster, redis):
    user = "burst@example.test"
    answers = []
    for i in range(9):  # round robin over the nodes, a new session each
        code, text = send_one(cluster[i % 3], user, "victim%d@remote.test" % i, "spam %d" % i)
        answers.append(code)
        last = text
    # five accepted across the three nodes, then 451: the count is the cluster's, so
    # the limit is reached exactly once (per node, each saw three)
    assert answers == [250] * 5 + [451] * 4, answers
    assert "locked for sending after suspected compromise" in last, last
    cluster[8 % 3].wait_log("account=burst@example.test decision=lock")
    # the lock holds on every node (AUTH refused), within the refresh
    wait_for(lambda: locked_everywhere(cluster, user), "the lock on every node", cluster)
    for k in cluster:
        if k is not cluster[8 % 3]:
            k.wait_log("account=burst@example.test decision=lock source=shared")
    # another account is not touched
    assert all(auth_answer(k, "legit@example.test")[0] == 235 for k in cluster)
    # the counters expire; the lock lasts until unlocked
    for key in redis.keys("kurier:rate:*"):
        assert int(redis.cli("TTL", key)) > 0, key
    assert int(redis.cli("TTL", "kurier:locks")) == -1
    # an unlock on one node is seen by the others
    cluster[0].cli("account", "unlock", user)
    wait_for(lambda: all(auth_answer(k, user)[0] == 235 for k in cluster),
             "the unlock on every node", cluster)
    for k in cluster:  # and each node stops cleanly (ASan build: no leak, no error)
        k.stop_clean()


def rcpt_answer(k, user, rcpts):
    """One message from user over a new session at k to rcpts: each RCPT's code, in
    order (the message is sent when one is accepted)."""
    s = login(k, user)
    assert not isinstance(s, tuple), s
    try:
        code, text = s.mail(user)
        assert code == 250, (code, text)
        codes = [s.rcpt(r)[0] for r in rcpts]
        if 250 in codes:
            assert s.data(b"Subject: x\r\n\r\nbody\r\n")[0] == 250
        return codes
    finally:
        s.close()


def test_distinct_recipients_counted_across_nodes(kurier_factory, dns, redis):
    """distinct_recipients_per_day across the nodes: an account writing to new
    addresses over all three nodes reaches the soft and then the hard limit once (each
    node alone saw too few); an address it wrote to before is not new on another node."""
    nodes = make_cluster(kurier_factory, dns, redis,
                         "    soft_distinct_recipients_per_day 4;\n"
                         "    hard_distinct_recipients_per_day 6;\n")
    user = "burst@example.test"
    answers = [rcpt_answer(nodes[i % 3], user, ["new%d@remote.test" % i])[0] for i in range(4)]
    assert answers == [250] * 4, answers
    # the first address again, at another node: not new, still 4
    assert rcpt_answer(nodes[1], user, ["new0@remote.test"]) == [250]
    answers = [rcpt_answer(nodes[i % 3], user, ["new%d@remote.test" % i])[0]
               for i in range(4, 7)]
    # 5 and 6 are over soft (451), 7 over hard: locked (each node saw at most 3)
    assert answers == [451, 451, 451], answers
    nodes[6 % 3].wait_log("account=burst@example.test limit=distinct_recipients_per_day "
                          "count=7 hard=6 decision=lock")
    wait_for(lambda: locked_everywhere(nodes, user), "the lock on every node", nodes)
    assert sum(k.log().count("limit=distinct_recipients_per_day count=7 hard=6 decision=lock")
               for k in nodes) == 1
    # the set holds hashes, not the addresses, and expires
    keys = redis.keys("kurier:dist:*")
    assert len(keys) == 1 and "burst@example.test" in keys[0], keys
    assert "remote.test" not in redis.cli("ZRANGE", keys[0], "0", "-1")
    assert 0 < int(redis.cli("TTL", keys[0])) <= 86400
    for k in nodes:
        k.stop_clean()


def shared_failed(redis, user):
    return sum(int(redis.cli("GET", key) or 0)
               for key in redis.keys("kurier:rate:failed_recipients_per_hour:%s*" % user))


def test_failed_recipients_counted_across_nodes(kurier_factory, dns, redis):
    """failed_recipients_per_hour across the nodes: three refused recipients, one at
    each node, reach the soft limit of 3: the next RCPT at any node waits (451); past
    the hard limit the account is locked once, for all."""
    nodes = make_cluster(kurier_factory, dns, redis,
                         "    soft_failed_recipients_per_hour 3;\n")
    user = "burst@example.test"
    for n, k in enumerate(nodes, 1):
        assert rcpt_answer(k, user, ["nosuch%d@example.test" % n]) == [550]
        wait_for(lambda: shared_failed(redis, user) == n, "the shared count", nodes)
    # node A saw one failure itself; the cluster three
    assert rcpt_answer(nodes[0], user, ["demo@example.test"]) == [451]
    nodes[0].wait_log("account=burst@example.test limit=failed_recipients_per_hour count=3 "
                      "soft=3 decision=tempfail")
    for k in nodes:
        k.stop_clean()


def test_failed_recipients_hard_limit_locks_across_nodes(kurier_factory, dns, redis):
    nodes = make_cluster(kurier_factory, dns, redis,
                         "    soft_failed_recipients_per_hour 0;\n"
                         "    hard_failed_recipients_per_hour 4;\n")
    user = "burst@example.test"
    for n in range(5):  # one or two at each node; the fifth is over 4
        assert rcpt_answer(nodes[n % 3], user, ["nosuch%d@example.test" % n]) == [550]
        wait_for(lambda: shared_failed(redis, user) == n + 1, "the shared count", nodes)
    nodes[4 % 3].wait_log("account=burst@example.test limit=failed_recipients_per_hour "
                          "count=5 hard=4 decision=lock")
    wait_for(lambda: locked_everywhere(nodes, user), "the lock on every node", nodes)
    for k in nodes:
        k.stop_clean()


def test_refused_attempts_not_counted_across_nodes(kurier_factory, dns, redis):
    """A RCPT refused by recipients_per_message and a MAIL of a locked account are not
    counted in the shared hourly windows (as on a single node)."""
    nodes = make_cluster(kurier_factory, dns, redis,
                         ABUSE + "    soft_recipients_per_message 2;\n")
    a, b, c = nodes
    user = "steady@example.test"

    def shared(limit):
        return sum(int(redis.cli("GET", key) or 0)
                   for key in redis.keys("kurier:rate:%s:%s*" % (limit, user)))

    # three recipients in one message: the third is refused (452), not counted
    codes = rcpt_answer(a, user, ["x1@remote.test", "x2@remote.test", "x3@remote.test"])
    assert codes == [250, 250, 452], codes
    assert shared("recipients_per_hour") == 2
    assert shared("messages_per_hour") == 1
    # a session logged in before the lock: its MAIL after the lock is not counted
    s = login(b, user)
    assert not isinstance(s, tuple), s
    for i in range(8):  # past the hard limit (8, with the message above) at C: locked
        send_one(c, user, "victim%d@remote.test" % i)
    c.wait_log("account=%s decision=lock" % user)
    wait_for(lambda: auth_answer(b, user)[0] == 535, "the lock at B", nodes)
    before = shared("messages_per_hour")
    code, text = s.mail(user)
    assert code == 451 and b"locked" in text, (code, text)
    s.close()
    assert shared("messages_per_hour") == before
    for k in nodes:
        k.stop_clean()


def test_auth_failures_add_up_across_nodes(cluster, redis):
    user = "guessed@example.test"
    # three wrong passwords, one at each node (auth max_failures 3)
    for k in cluster:
        assert auth_answer(k, user, "wrong")[0] == 535
    # now the pair is blocked on every node, right password or not; node A alone saw
    # only one failure
    for k in cluster:
        code, text = auth_answer(k, user)
        assert code == 454 and "Too many failed logins" in text, (code, text)
    # another account from the same address still logs in (the address limit is 30)
    assert auth_answer(cluster[0], "steady@example.test")[0] == 235
    for key in redis.keys("kurier:auth*"):
        assert int(redis.cli("TTL", key)) > 0, key


def egress_benched(k, ip):
    st = json.loads(k.cli("egress", "status", "--json").stdout.decode())
    for a in st["addresses"]:
        if a["address"] == ip:
            return bool(a["benches"])
    raise AssertionError("%s not in egress status: %s" % (ip, st))


def test_egress_bench_seen_by_all(cluster, redis):
    a, b, c = cluster
    r = a.cli("egress", "bench", "127.0.0.2", "--for", "2h", "--reason", "maintenance")
    assert "benched 127.0.0.2" in r.stdout.decode()
    wait_for(lambda: all(egress_benched(k, "127.0.0.2") for k in cluster),
             "the bench on every node", cluster)
    key = redis.keys("kurier:bench:*")
    assert key and 0 < int(redis.cli("TTL", key[0])) <= 7200
    b.cli("egress", "unbench", "127.0.0.2")
    wait_for(lambda: not any(egress_benched(k, "127.0.0.2") for k in cluster),
             "the unbench on every node", cluster)


def test_redis_down_fail_modes_then_converge(cluster, redis):
    a, b, c = cluster
    user = "burst@example.test"
    for i in range(9):  # over the hard limit at A: locked
        send_one(a, user, "victim%d@remote.test" % i)
    wait_for(lambda: locked_everywhere(cluster, user), "the lock on every node", cluster)
    redis.kill()
    # greylisting fails open: a new triplet passes at once, logged
    assert attempt(b, "down@good.test")[0] == 250
    b.wait_log("shared state unreachable (greylist_fail open)")
    b.wait_mail("demo@example.test")
    # rate limits fail open: an account still sends (counted on the node only)
    assert send_one(c, "legit@example.test", "demo@example.test") == (250, "")
    c.wait_log("counted on this node only (rate_fail open)")
    c.wait_mail("demo@example.test")
    # ... and each such decision is counted
    assert 'kurier_state_unavailable_total{check="greylist"} 1' in metrics(b)
    assert 'kurier_state_unavailable_total{check="rate"}' in metrics(c)
    # a locked account stays locked on every node (fails closed)
    assert locked_everywhere(cluster, user)
    # Redis comes back (empty): the nodes write the locks they know again and the
    # shared decisions work again
    redis.start()
    wait_for(lambda: redis.cli("HEXISTS", "kurier:locks", user).strip() == "1",
             "the lock back in Redis", cluster)
    assert locked_everywhere(cluster, user)
    for k in cluster:  # each node past its backoff
        k.wait_log("Redis reachable again")
    assert attempt(a, "after@good.test")[0] == 451
    code = 451
    deadline = time.time() + SAFETY
    while code != 250:
        assert time.time() < deadline
        time.sleep(0.5)
        code = attempt(c, "after@good.test")[0]
    assert attempt(b, "after@good.test")[0] == 250
    for k in cluster:
        k.stop_clean()


def test_kill9_of_one_node_loses_none_of_the_others_mail(cluster, redis):
    a, b, c = cluster
    sent = {id(k): 0 for k in cluster}
    # an account per node: each stays under the (cluster-wide) rate limit of 5
    users = {id(a): "other@example.test", id(b): "steady@example.test",
             id(c): "legit@example.test"}
    for i in range(4):
        for k in cluster:
            if k is a and i >= 2:
                continue
            assert send_one(k, users[id(k)], "demo@example.test", "m%d" % i) == (250, "")
            sent[id(k)] += 1
        if i == 1:
            a.kill9()
    for k in (b, c):
        files = k.wait_mail("demo@example.test", sent[id(k)])
        assert len(files) == sent[id(k)]
    # A's own accepted mail is in its spool: delivered after its restart
    a.start()
    files = a.wait_mail("demo@example.test", sent[id(a)])
    assert len(files) == sent[id(a)]
    for k in (b, c):
        assert "ERROR: AddressSanitizer" not in k.log()


def test_hangup_while_the_shared_count_is_asked(cluster, redis):
    """The account's count across the nodes is asked on a worker between MAIL and its
    answer: a client that hangs up then is cancelled cleanly (the session is gone when
    the worker returns), and the node goes on serving."""
    a = cluster[0]
    s = login(a, "steady@example.test")
    assert not isinstance(s, tuple), s
    # Redis stalls (longer than timeout_ms): the count waits on the worker
    stall = threading.Thread(target=redis.cli, args=("DEBUG", "SLEEP", "2"))
    stall.start()
    time.sleep(0.2)
    s.sock.sendall(b"MAIL FROM:<steady@example.test>\r\n")
    s.sock.shutdown(socket.SHUT_RDWR)
    s.close()
    stall.join()
    a.wait_log("disconnect from")
    # the node still serves, with the shared count again
    assert send_one(a, "legit@example.test", "demo@example.test") == (250, "")
    a.wait_mail("demo@example.test")
    a.stop_clean()


LIST_ZONE = """$SOA 1 mon.test. hostmaster.mon.test. 1 600 60 3600 1
$NS 1 ns.mon.test.
$TTL 1
:127.0.0.2:Listed in mon.test
127.0.0.3
"""


def test_blocklist_listing_found_by_one_node_is_known_to_all(kurier_factory, redis):
    """The monitor of one node stores what it finds in Redis: the other node's `kurier
    monitor status` (and its history) shows it."""
    with peers.rbldnsd({"mon.test": ("ip4set", LIST_ZONE)}, "mon.test") as resolver:
        state = ("state {\n    backend redis;\n    servers 127.0.0.1:%d;\n}\n"
                 "resolver %s;\n" % (redis.port, resolver))
        watcher = kurier_factory(extra=state + "monitor {\n    addresses 127.0.0.3;\n"
                                 "    lists mon.test;\n    interval 1s;\n}\n")
        other = kurier_factory(extra=state)
        for k in (watcher, other):
            k.add_domain("example.test")
            k.start()
        watcher.wait_log("address=127.0.0.3, list=mon.test, state=listed (was none)")
        wait_for(lambda: "listed" in other.cli("monitor", "status").stdout.decode(),
                 "the listing on the other node", [watcher, other])
        rows = [json.loads(line) for line in
                other.cli("monitor", "status", "--json").stdout.decode().splitlines()]
        assert [(r["address"], r["zone"], r["state"]) for r in rows] == [
            ("127.0.0.3", "mon.test", "listed")], rows
        hist = other.cli("monitor", "history").stdout.decode()
        assert "127.0.0.3" in hist and "listed" in hist, hist
        for k in (watcher, other):
            k.stop_clean()


def test_probe_answers_shared(kurier_factory, redis):
    """Relay domains: the answer of the customer's server to one node's probe is
    remembered in Redis, so the other node asks no second time (and the key expires
    with the answer)."""
    host = "127.0.0.61"
    port = free_port(host)
    ds = peers.Downstream(host, port, ("alice@relay.test",))
    try:
        nodes = []
        for _ in range(2):
            k = kurier_factory(extra=(
                "state {\n    backend redis;\n    servers 127.0.0.1:%d;\n}\n"
                "transport relay.test {\n    relay %s:%d;\n    relay_domain on;\n"
                "    tls none;\n}\n"
                "verify {\n    positive_ttl 1h;\n    negative_ttl 1h;\n}\n"
                % (redis.port, host, port)))
            k.add_domain("example.test")
            nodes.append(k.start())
        a, b = nodes

        def rcpt(k, addr):
            with smtplib.SMTP("127.0.0.1", k.port, timeout=SAFETY) as s:
                s.ehlo("client.test")
                assert s.mail("someone@sender.test")[0] == 250
                return s.rcpt(addr)

        code, text = rcpt(a, "bob@relay.test")
        assert code == 550 and b"user unknown" in text, (code, text)
        assert rcpt(b, "alice@relay.test")[0] == 250
        assert ds.probe_count() == 2
        # each node asked once; the other takes the answer from Redis
        code, text = rcpt(b, "bob@relay.test")
        assert code == 550 and b"user unknown" in text, (code, text)
        assert rcpt(a, "alice@relay.test")[0] == 250
        assert ds.probe_count() == 2
        keys = redis.keys("kurier:verify:*")
        assert len(keys) == 2
        for key in keys:
            assert 0 < int(redis.cli("TTL", key)) <= 3600, key
        for k in nodes:
            k.stop_clean()
    finally:
        ds.stop()


def test_sentinel_names_the_master(kurier_factory, dns, redis):
    """state { sentinel_master NAME; }: the servers are Sentinels, asked for the
    master; a name they do not know leaves the node on its fail modes."""
    sdir = tempfile.mkdtemp(prefix="kurier-sentinel-")
    sport = free_port()
    with open(os.path.join(sdir, "sentinel.conf"), "w") as f:
        f.write("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %d 1\n"
                % (sport, sdir, redis.port))
    proc = subprocess.Popen(["redis-server", os.path.join(sdir, "sentinel.conf"), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", sport)
        nodes = []
        for master in ("mymaster", "nosuchmaster"):
            conf = node_conf(dns, sport, free_port()).replace(
                "    refresh 1s;\n", "    refresh 1s;\n    sentinel_master %s;\n" % master)
            k = kurier_factory(extra=conf, listen_extra="    greylist always;\n")
            k.add_domain("example.test")
            k.add_mailbox("demo@example.test", "demo")
            nodes.append(k.start())
        good, bad = nodes
        assert attempt(good, "via-sentinel@good.test")[0] == 451
        assert any("via-sentinel@good.test" in key for key in redis.keys("kurier:grey:t:*"))
        # the other node finds no master: greylisting fails open there
        assert attempt(bad, "lost@good.test")[0] == 250
        bad.wait_log("does not name master nosuchmaster")
        # a reload cannot move the node to another Redis: it says a restart is needed
        with open(good.conf) as f:
            text = f.read()
        with open(good.conf, "w") as f:
            f.write(text.replace("timeout_ms 300;", "timeout_ms 400;"))
        good.proc.send_signal(signal.SIGHUP)
        good.wait_log("prefix, timeout_ms and refresh need a restart")
        good.wait_log("reloaded configuration")
        for k in nodes:
            k.stop_clean()
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(sdir, ignore_errors=True)


def test_fail_modes_closed(kurier_factory, dns, redis):
    """state { greylist_fail closed; rate_fail closed; auth_fail closed; }: with Redis
    down, greylisting, authenticated MAIL and AUTH answer 4xx (the client retries)."""
    conf = node_conf(dns, redis.port, free_port()).replace(
        "    refresh 1s;\n",
        "    refresh 1s;\n    greylist_fail closed;\n    rate_fail closed;\n"
        "    auth_fail closed;\n")
    k = kurier_factory(extra=conf, listen_extra="    greylist always;\n")
    k.sub_port = free_port()
    with open(k.conf, "a") as f:
        f.write("listen 127.0.0.1:%d {\n    role submission;\n    auth_plaintext on;\n}\n"
                % k.sub_port)
    k.add_domain("example.test")
    k.add_mailbox("demo@example.test", "demo")
    k.add_mailbox("legit@example.test", "legit-pw")
    k.start()
    s = login(k, "legit@example.test")  # logged in while Redis is up
    assert not isinstance(s, tuple), s
    redis.kill()
    code, text = s.mail("legit@example.test")
    assert code == 451 and b"Sending limits temporarily unavailable" in text, (code, text)
    s.quit()
    k.wait_log("shared counters unreachable: refused for now (rate_fail closed)")
    code, text = auth_answer(k, "legit@example.test")
    assert code == 454 and "Temporary authentication failure" in text, (code, text)
    code, text = attempt(k, "closed@good.test")
    assert code == 451 and "greylisting database" in text, (code, text)
    k.wait_log("shared state unreachable (greylist_fail closed)")
    assert k.maildir_new("demo@example.test") == []
    k.stop_clean()


def test_redis_password(kurier_factory, dns):
    """state { password_file; }: the password (read at start, before the daemon drops
    to the kurier user; never printed) is sent with AUTH on every connection. A node
    with the right one shares its greylisting; a wrong one or none is logged plainly
    and the fail modes apply (greylisting fails open)."""
    password = "s3cret-redis-pw"
    redis = Redis(password=password).start()
    try:
        nodes = []
        for host, pw in zip(NODE_HOSTS, (password, "not-the-password", None)):
            k = kurier_factory(extra=node_conf(dns, redis.port, free_port()),
                               listen_extra="    greylist always;\n", host=host)
            if pw:
                path = os.path.join(k.dir, "redis.pw")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)  # root's: read before the drop
                os.write(fd, (pw + "\n").encode())
                os.close(fd)
                with open(k.conf) as f:
                    text = f.read()
                with open(k.conf, "w") as f:
                    f.write(text.replace("    refresh 1s;\n",
                                         "    refresh 1s;\n    password_file %s;\n" % path))
            k.add_domain("example.test")
            k.add_mailbox("demo@example.test", "demo")
            nodes.append(k.start())
        good, wrong, none = nodes
        # the right password: greylisted, the triplet is in Redis
        assert attempt(good, "auth@good.test")[0] == 451
        assert any("auth@good.test" in key for key in redis.keys("kurier:grey:t:*"))
        # the CLI reads the shared state with the same password
        out = good.cli("greylist", "list").stdout.decode()
        assert "auth@good.test" in out, out
        # never printed: not by config dump, not in the log
        dump = good.cli("config", "dump").stdout.decode()
        assert "password_file" in dump and password not in dump, dump
        # a wrong password: a clear line, and greylisting fails open
        assert attempt(wrong, "wrong@good.test")[0] == 250
        wrong.wait_log("AUTH refused (state password_file)")
        wrong.wait_log("shared state unreachable (greylist_fail open)")
        # none at all: Redis says it wants one
        assert attempt(none, "none@good.test")[0] == 250
        none.wait_log("wants a password (state password_file)")
        assert not any(s in key for key in redis.keys("kurier:grey:t:*")
                       for s in ("wrong@good.test", "none@good.test"))
        for k in nodes:
            assert password not in k.log() and "not-the-password" not in k.log()
            k.stop_clean()
        # a password file others may read is refused, as the other secret files are
        os.chmod(os.path.join(good.dir, "redis.pw"), 0o644)
        said = good.config_check_fails(good.conf)
        assert "Redis password file" in said and "chmod 600" in said, said
    finally:
        redis.cleanup()


def test_sentinel_password(kurier_factory, dns):
    """state { sentinel_password_file; }: Sentinels with a requirepass of their own are
    asked with it (and the master with password_file); without it the node cannot find
    the master and fails open."""
    redis = Redis(password="data-pw").start()
    sdir = tempfile.mkdtemp(prefix="kurier-sentinel-")
    sport = free_port()
    with open(os.path.join(sdir, "sentinel.conf"), "w") as f:
        f.write("port %d\nbind 127.0.0.1\ndir %s\nrequirepass sentinel-pw\n"
                "sentinel monitor mymaster 127.0.0.1 %d 1\n"
                "sentinel auth-pass mymaster data-pw\n" % (sport, sdir, redis.port))
    proc = subprocess.Popen(["redis-server", os.path.join(sdir, "sentinel.conf"), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", sport)
        nodes = []
        for with_sentinel_pw in (True, False):
            conf = node_conf(dns, sport, free_port())
            k = kurier_factory(extra="", listen_extra="    greylist always;\n")
            lines = "    sentinel_master mymaster;\n"
            for name, pw in (("data", "data-pw"), ("sentinel", "sentinel-pw")):
                if name == "sentinel" and not with_sentinel_pw:
                    continue
                path = os.path.join(k.dir, name + ".pw")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                os.write(fd, pw.encode() + b"\n")
                os.close(fd)
                lines += "    %spassword_file %s;\n" % (
                    "sentinel_" if name == "sentinel" else "", path)
            with open(k.conf, "a") as f:
                f.write(conf.replace("    refresh 1s;\n", "    refresh 1s;\n" + lines))
            k.add_domain("example.test")
            k.add_mailbox("demo@example.test", "demo")
            nodes.append(k.start())
        good, bad = nodes
        assert attempt(good, "sentinel-auth@good.test")[0] == 451
        assert any("sentinel-auth@good.test" in key for key in redis.keys("kurier:grey:t:*"))
        assert attempt(bad, "no-sentinel-pw@good.test")[0] == 250
        bad.wait_log("wants a password (state sentinel_password_file)")
        for k in nodes:
            k.stop_clean()
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(sdir, ignore_errors=True)
        redis.cleanup()
