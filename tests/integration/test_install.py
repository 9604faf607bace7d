#!/usr/bin/python3
"""Installing kurier as a Debian admin expects (issue 17, items 1 and 2): `make install`
into a DESTDIR lays out programs, the sendmail/mailq/newaliases links, man pages, bash
completion, the systemd unit, /etc/kurier/kurier.conf (never overwritten) and the state
folders; `make uninstall` takes back only what it put there. The unit passes
`systemd-analyze verify`, and kurierd starts under its capability bounding set with
no new privileges, telling systemd when it is ready (sd_notify). The man pages lint
clean with mandoc and groff and cannot drift from the command and key tables."""

import os
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import KURIER, KURIERD, SAFETY, wait_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.dirname(KURIER)


def make(*args):
    """make in the repository with the build folder under test (nothing is rebuilt
    when it is up to date: the default PREFIX is the one it was built for)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k != "MFLAGS"}
    var = ["BUILD=" + BUILD]
    if os.path.basename(BUILD) == "build-asan":
        var.append("SANITIZE=address,undefined")
    return subprocess.run(["make", "-s", "-C", ROOT, *var, *args], capture_output=True,
                          text=True, env=env, timeout=600)


@pytest.fixture
def destdir():
    d = tempfile.mkdtemp(prefix="kurier-destdir-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def installed(destdir):
    r = make("install", "DESTDIR=" + destdir)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_destdir_install_tree(destdir):
    installed(destdir)
    p = lambda path: os.path.join(destdir, path.lstrip("/"))  # noqa: E731
    for path, mode in [("/usr/local/sbin/kurierd", 0o755), ("/usr/local/bin/kurier", 0o755),
                       ("/usr/local/share/kurier/replies.rules", 0o644),
                       ("/usr/local/share/kurier/kurier.conf.example", 0o644),
                       ("/usr/local/share/man/man1/kurier.1", 0o644),
                       ("/usr/local/share/man/man5/kurier.conf.5", 0o644),
                       ("/usr/local/share/man/man8/kurierd.8", 0o644),
                       ("/usr/share/bash-completion/completions/kurier", 0o644),
                       ("/lib/systemd/system/kurier.service", 0o644),
                       ("/etc/kurier/kurier.conf", 0o644)]:
        assert os.path.isfile(p(path)) and not os.path.islink(p(path)), path
        assert os.stat(p(path)).st_mode & 0o777 == mode, path
    # where Debian's mail-transport-agent puts them, pointing at the installed kurier
    for link in ("/usr/sbin/sendmail", "/usr/bin/mailq", "/usr/bin/newaliases"):
        assert os.readlink(p(link)) == "/usr/local/bin/kurier", link
    for folder in ("/var/lib/kurier", "/var/spool/kurier", "/var/mail/vhosts"):
        assert os.path.isdir(p(folder)), folder
    # the production example: the real ports and folders, and a valid file
    conf = open(p("/etc/kurier/kurier.conf")).read()
    assert conf == open(os.path.join(ROOT, "examples", "kurier.conf.production")).read()
    for text in ("listen *:25", "listen *:587", "listen *:465", "/var/lib/kurier",
                 "/var/spool/kurier"):
        assert text in conf, text
    r = subprocess.run([p("/usr/local/bin/kurier"), "config", "check",
                        p("/etc/kurier/kurier.conf")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    unit = open(p("/lib/systemd/system/kurier.service")).read()
    for line in ("Type=notify", "ExecStart=/usr/local/sbin/kurierd -c /etc/kurier/kurier.conf",
                 "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "ReadWritePaths=-/var/lib/kurier -/var/spool/kurier"):
        assert line in unit, line
    caps = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split()
    assert {"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"} <= set(caps)
    # the installed binaries are these
    r = subprocess.run([p("/usr/local/sbin/kurierd"), "-V"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("kurierd ")


def test_install_keeps_the_admins_config_and_uninstall_keeps_data(destdir):
    p = lambda path: os.path.join(destdir, path.lstrip("/"))  # noqa: E731
    # another MTA's sendmail is there first
    os.makedirs(p("/usr/sbin"))
    with open(p("/usr/sbin/sendmail"), "w") as f:
        f.write("#!/bin/sh\n# postfix\n")
    installed(destdir)
    assert open(p("/usr/sbin/sendmail.pre-kurier")).read().endswith("# postfix\n")
    with open(p("/etc/kurier/kurier.conf"), "w") as f:
        f.write("hostname mx.admin.example;\n")
    os.makedirs(p("/var/spool/kurier/queue"))
    r = installed(destdir)
    assert "kurier.conf kept" in r.stdout, r.stdout
    assert open(p("/etc/kurier/kurier.conf")).read() == "hostname mx.admin.example;\n"
    assert os.readlink(p("/usr/sbin/sendmail")) == "/usr/local/bin/kurier"

    r = make("uninstall", "DESTDIR=" + destdir)
    assert r.returncode == 0, r.stdout + r.stderr
    for gone in ("/usr/local/sbin/kurierd", "/usr/local/bin/kurier", "/usr/bin/mailq",
                 "/usr/bin/newaliases", "/usr/local/share/man/man8/kurierd.8",
                 "/lib/systemd/system/kurier.service",
                 "/usr/share/bash-completion/completions/kurier"):
        assert not os.path.lexists(p(gone)), gone
    # the other MTA's sendmail is back; configuration and mail stay
    assert open(p("/usr/sbin/sendmail")).read().endswith("# postfix\n")
    assert open(p("/etc/kurier/kurier.conf")).read() == "hostname mx.admin.example;\n"
    assert os.path.isdir(p("/var/spool/kurier/queue"))


def unit_for_test(destdir):
    """The installed unit, its programs named inside DESTDIR so that systemd finds
    them here."""
    unit = open(os.path.join(destdir, "lib/systemd/system/kurier.service")).read()
    return unit.replace("/usr/local/sbin/kurierd", os.path.join(destdir, "usr/local/sbin/kurierd"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verify(destdir):
    installed(destdir)
    d = os.path.join(destdir, "verify")
    os.makedirs(d)
    path = os.path.join(d, "kurier.service")
    with open(path, "w") as f:
        f.write(unit_for_test(destdir))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True,
                       text=True, timeout=SAFETY)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    # a mistake in a unit is caught by the same check
    with open(path, "w") as f:
        f.write(unit_for_test(destdir).replace("ProtectSystem=", "ProtectSystm="))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True,
                       text=True, timeout=SAFETY)
    assert "ProtectSystm" in r.stderr, r.stderr
    # the sandbox, as systemd rates it (shown 0 to 10, lower is tighter; the threshold counts tenths)
    with open(path, "w") as f:
        f.write(unit_for_test(destdir))
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=40",  # 4.0 as shown
                        os.path.join(d, "kurier.service")], capture_output=True, text=True,
                       timeout=SAFETY)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: kurierd drops to user kurier")
def test_kurierd_starts_under_the_units_limits_and_notifies(destdir, kurier_factory):
    """kurierd as systemd runs it: root with only the unit's capabilities in its bounding
    set, no new privileges, $NOTIFY_SOCKET set. READY=1 comes once the port and the
    control socket answer; a reload says RELOADING=1 then READY=1; stop says
    STOPPING=1. Twice: the second start finds its folders owned by kurier."""
    installed(destdir)
    unit = open(os.path.join(destdir, "lib/systemd/system/kurier.service")).read()
    caps = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split()
    bounding = "-all," + ",".join("+" + c[4:].lower() for c in caps)
    k = kurier_factory()
    k.add_domain("example.test")
    sockpath = os.path.join(k.dir, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sockpath)
    os.chmod(sockpath, 0o777)  # the daemon talks after the drop, as systemd's socket allows
    notify.settimeout(SAFETY)
    try:
        for round in range(2):
            with open(k.logfile, "ab") as log:
                proc = subprocess.Popen(
                    ["setpriv", "--bounding-set", bounding, "--inh-caps=-all", "--no-new-privs",
                     KURIERD, "-c", k.conf], stdout=log, stderr=log,
                    env=dict(os.environ, NOTIFY_SOCKET=sockpath))
            try:
                msg = notify.recv(4096).decode()
                assert "READY=1" in msg.split("\n"), (msg, k.log()[-2000:])
                # ready means ready: the port and the control socket answer now
                wait_port("127.0.0.1", k.port, timeout=1)
                k.cli("queue", "list")
                k.cli("reload")
                assert notify.recv(4096).decode().split("\n")[0] == "RELOADING=1"
                assert "READY=1" in notify.recv(4096).decode().split("\n")
                k.cli("stop")
                assert notify.recv(4096).decode().split("\n")[0] == "STOPPING=1"
                assert proc.wait(timeout=SAFETY) == 0, k.log()[-2000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        notify.close()


def test_production_example_is_valid():
    r = subprocess.run([KURIER, "config", "check",
                        os.path.join(ROOT, "examples", "kurier.conf.production")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- man pages --------------------------------------------------------------------

PAGES = ["man/kurier.1", "man/kurier.conf.5", "man/kurierd.8"]


@pytest.mark.parametrize("page", PAGES)
def test_man_page_lints_clean(page):
    path = os.path.join(BUILD, page)
    if shutil.which("mandoc"):
        r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", path], capture_output=True,
                           text=True)
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    r = subprocess.run(["groff", "-ww", "-man", "-z", path], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    r = subprocess.run(["man", "-l", path], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80", MAN_KEEP_STDERR="1"))
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    assert "kurier" in r.stdout


def test_man_pages_follow_the_tables():
    """kurier(1) and kurier.conf(5) are made from the tables (make rebuilds them with the
    binary): every command and every config key is there."""
    assert open(os.path.join(BUILD, "man/kurier.1")).read() == subprocess.run(
        [KURIER, "help", "--man"], capture_output=True, text=True, check=True).stdout
    conf5 = subprocess.run([KURIER, "config", "man"], capture_output=True, text=True,
                           check=True).stdout
    assert open(os.path.join(BUILD, "man/kurier.conf.5")).read() == conf5
    rendered = subprocess.run(["man", "-l", "-"], input=conf5, capture_output=True, text=True,
                              env=dict(os.environ, MANWIDTH="200")).stdout
    doc = open(os.path.join(ROOT, "docs", "config.md")).read()
    keys = set(re.findall(r"^\| `([a-z_0-9]+)` \|", doc, re.M))
    assert len(keys) > 100
    missing = [key for key in sorted(keys) if not re.search(r"^ {7}%s\b" % key, rendered, re.M)]
    assert not missing, missing
    man1 = subprocess.run(["man", "-l", os.path.join(BUILD, "man/kurier.1")], capture_output=True,
                          text=True, env=dict(os.environ, MANWIDTH="200")).stdout
    for line in subprocess.run([KURIER, "help"], capture_output=True,
                               text=True).stdout.split("Commands:\n")[1].splitlines():
        if line.startswith("  "):
            assert "kurier " + line.split()[0] in man1, line
    assert "EXIT STATUS" in man1 and "SENDMAIL" in man1
