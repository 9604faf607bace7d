#!/usr/bin/python3
"""What the README promises for `make run`: the demo config with its self-signed
certificate and demo mailbox, swaks to 2525 and to 2587 with STARTTLS and AUTH; and
that `make run` builds on the first try on a machine where `make deps` has still to
install the libraries."""

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, SAFETY, wait_port

# `make run` listens on the fixed ports of the bundled config: one of these at a time
# (pytest-xdist runs a group on one worker, in turn).
pytestmark = pytest.mark.xdist_group("make_run")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_make_run_demo():
    if not all(port_free(p) for p in (2525, 2587, 2465)):
        pytest.skip("ports 2525/2587/2465 are in use (is `make run` running?)")
    d = tempfile.mkdtemp(prefix="kurier-demo-")
    os.chmod(d, 0o755)
    try:
        os.makedirs(os.path.join(d, "examples"))
        os.makedirs(os.path.join(d, "scripts"))
        shutil.copy(os.path.join(ROOT, "examples", "kurier.conf"), os.path.join(d, "examples"))
        shutil.copy(os.path.join(ROOT, "scripts", "run-demo"), os.path.join(d, "scripts"))
        log = open(os.path.join(d, "demo.log"), "wb")
        p = subprocess.Popen([os.path.join(d, "scripts", "run-demo"), BUILD], cwd=d,
                             stdout=log, stderr=log, start_new_session=True)
        try:
            wait_port("127.0.0.1", 2525, proc=p)
            wait_port("127.0.0.1", 2587, proc=p)
            # the ports accept before the start-up is over: wait for its last line
            deadline = time.time() + SAFETY
            while b"daemon started" not in open(os.path.join(d, "demo.log"), "rb").read():
                assert p.poll() is None and time.time() < deadline, open(
                    os.path.join(d, "demo.log"), "rb").read()[-3000:]
                time.sleep(0.05)
            a = subprocess.run(["swaks", "--server", "127.0.0.1:2525", "--to",
                                "demo@example.test"], capture_output=True, timeout=30)
            assert a.returncode == 0, a.stdout.decode()
            b = subprocess.run(["swaks", "--server", "127.0.0.1:2587", "--tls", "--auth",
                                "PLAIN", "--auth-user", "demo@example.test", "--auth-password",
                                "demo", "--from", "demo@example.test", "--to",
                                "demo@example.test"], capture_output=True, timeout=30)
            assert b.returncode == 0, b.stdout.decode()
            new = os.path.join(d, "var", "mail", "example.test", "demo", "Maildir", "new")
            deadline = time.time() + SAFETY
            while time.time() < deadline and len(os.listdir(new) if os.path.isdir(new) else []) < 2:
                time.sleep(0.1)
            assert len(os.listdir(new)) == 2
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=SAFETY)
            log.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def wait_for(pred, what, log_path, timeout=60):
    deadline = time.time() + timeout  # a safety net only: the machine may be slow
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    with open(log_path, errors="replace") as f:
        raise AssertionError("%s never happened:\n%s" % (what, f.read()[-3000:]))


def submit(port, tls_flag):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, tls_flag, "--auth", "PLAIN",
                        "--auth-user", "demo@example.test", "--auth-password", "demo",
                        "--from", "demo@example.test", "--to", "demo@example.test"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode(errors="replace")


def served_subject(port):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    return [l for l in r.stdout.decode(errors="replace").splitlines()
            if l.startswith("subject=")]


def test_make_run_from_a_folder_kurier_cannot_enter():
    """Issue 9 item 12: a newcomer clones into /root (mode 0700) and types make run.
    run-demo starts kurierd as root; after the drop to user kurier it must still take
    mail, deliver it, authenticate, answer the control socket and reload its
    certificates, although kurier cannot pass through the clone's parent."""
    if os.geteuid() != 0:
        pytest.skip("needs root (kurierd drops to user kurier)")
    try:
        kurier_pw = pwd.getpwnam("kurier")
    except KeyError:
        pytest.skip("no user kurier (make deps creates it)")
    if not all(port_free(p) for p in (2525, 2587, 2465)):
        pytest.skip("ports 2525/2587/2465 are in use (is `make run` running?)")
    home = tempfile.mkdtemp(prefix="kurier-home-")  # like /root: mode 0700, root's
    os.chmod(home, 0o700)
    d = os.path.join(home, "kurier")  # the clone itself: 0755 as git makes it
    try:
        for sub in ("examples", "scripts"):
            os.makedirs(os.path.join(d, sub))
        os.chmod(d, 0o755)
        shutil.copy(os.path.join(ROOT, "examples", "kurier.conf"), os.path.join(d, "examples"))
        shutil.copy(os.path.join(ROOT, "scripts", "run-demo"), os.path.join(d, "scripts"))
        log_path = os.path.join(home, "demo.log")
        log = open(log_path, "wb")
        # what `make run` runs after building, from the clone's root
        p = subprocess.Popen([os.path.join(d, "scripts", "run-demo"), BUILD], cwd=d,
                             stdout=log, stderr=log, start_new_session=True)
        try:
            wait_port("127.0.0.1", 2525, timeout=60, proc=p)
            wait_port("127.0.0.1", 2587, timeout=60, proc=p)
            wait_port("127.0.0.1", 2465, timeout=60, proc=p)
            wait_for(lambda: "daemon started" in open(log_path, errors="replace").read(),
                     "daemon started", log_path)
            # run-demo exec'd kurierd: p is the daemon, now running as kurier
            with open("/proc/%d/status" % p.pid) as f:
                uids = [l.split()[1:] for l in f if l.startswith("Uid:")][0]
            assert all(int(u) == kurier_pw.pw_uid for u in uids), uids
            # kurier itself cannot reach the state folder from "/"
            reach = subprocess.run(["su", "-s", "/bin/sh", "-c", "test -x '%s/var'" % d,
                                    "kurier"], capture_output=True)
            assert reach.returncode != 0

            a = subprocess.run(["swaks", "--server", "127.0.0.1:2525", "--to",
                                "demo@example.test"], capture_output=True, timeout=60)
            assert a.returncode == 0, a.stdout.decode(errors="replace")
            submit(2587, "--tls")
            new = os.path.join(d, "var", "mail", "example.test", "demo", "Maildir", "new")
            wait_for(lambda: os.path.isdir(new) and len(os.listdir(new)) == 2,
                     "two deliveries", log_path)

            # the control socket answers the CLI
            cli = [os.path.join(BUILD, "kurier"), "-c", "examples/kurier.conf"]
            r = subprocess.run(cli + ["queue", "flush"], cwd=d, capture_output=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            # a mailbox added while the daemon runs is found in the directory, and mail
            # dropped by sendmail is picked up from the maildrop
            r = subprocess.run(cli + ["mailbox", "add", "new@example.test", "--password", "x"],
                               cwd=d, capture_output=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            a = subprocess.run(["swaks", "--server", "127.0.0.1:2525", "--to",
                                "new@example.test"], capture_output=True, timeout=60)
            assert a.returncode == 0, a.stdout.decode(errors="replace")
            r = subprocess.run([os.path.join(BUILD, "sendmail"), "demo@example.test"], cwd=d,
                               env=dict(os.environ, KURIER_CONF="examples/kurier.conf"),
                               input=b"Subject: dropped\n\nby sendmail\n", capture_output=True,
                               timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            new2 = os.path.join(d, "var", "mail", "example.test", "new", "Maildir", "new")
            wait_for(lambda: os.path.isdir(new2) and len(os.listdir(new2)) == 1,
                     "the delivery to the new mailbox", log_path)
            wait_for(lambda: len(os.listdir(new)) == 3, "the maildrop's delivery", log_path)

            # a renewed certificate, then SIGHUP: read again through the working folder.
            # The key is made readable by the daemon's group (item 13 has kurier tls
            # selfsigned write it so).
            assert served_subject(2465) == ["subject=CN = mx.example.test"]
            r = subprocess.run(cli + ["tls", "selfsigned", "mx2.example.test", "--force"], cwd=d,
                               capture_output=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            key = os.path.join(d, "var", "tls", "key.pem")
            os.chown(key, 0, kurier_pw.pw_gid)
            os.chmod(key, 0o640)
            os.kill(p.pid, signal.SIGHUP)
            wait_for(lambda: "reloaded configuration from examples/kurier.conf"
                     in open(log_path, errors="replace").read(), "the reload", log_path)
            assert served_subject(2465) == ["subject=CN = mx2.example.test"]
            submit(2465, "--tlsc")
            wait_for(lambda: len(os.listdir(new)) == 4, "the delivery after the reload", log_path)
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
            with open(log_path, errors="replace") as f:
                text = f.read()
            assert p.returncode == 0, text[-3000:]
            assert "Permission denied" not in text, text[-3000:]
            assert "keeps its old TLS certificate" not in text, text[-3000:]
            assert "stopped" in text
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=60)
            log.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


FAKE_INSTALL_DEPS = """#!/bin/sh
# stand-in for scripts/install-deps: "installs" the libraries by putting their
# pkg-config files where pkg-config (PKG_CONFIG_LIBDIR) looks, as apt-get would
set -e
IFS=:
for d in $REAL_PC_PATH; do
    [ -d "$d" ] && find "$d" -maxdepth 1 -name '*.pc' -exec cp {} "$PKG_CONFIG_LIBDIR/" \\;
done
echo "install-deps: installed"
"""

FAKE_RUN_DEMO = """#!/bin/sh
# stand-in for scripts/run-demo: the binaries were linked and run
set -e
"$1/kurierd" -t -c examples/kurier.conf
"$1/kurier" -c examples/kurier.conf config check
"""


def test_make_run_first_try_on_a_fresh_machine(tmp_path):
    """Issue 9 item 11. A copy of the tree whose pkg-config finds no library until
    `deps` has run (real pkg-config, empty PKG_CONFIG_LIBDIR; the stand-in for
    install-deps copies the system's .pc files there). A build before deps stops at
    once with a message that says what to do; `make run` then builds and links on
    the first try, so pkg-config was asked after deps had installed the libraries."""
    real_pc_path = subprocess.run(["pkg-config", "--variable", "pc_path", "pkg-config"],
                                  capture_output=True, check=True).stdout.decode().strip()
    tree = tmp_path / "kurier"
    shutil.copytree(os.path.join(ROOT, "src"), tree / "src")
    shutil.copytree(os.path.join(ROOT, "examples"), tree / "examples")
    shutil.copytree(os.path.join(ROOT, "man"), tree / "man")  # kurierd.8, built by all
    shutil.copy(os.path.join(ROOT, "Makefile"), tree / "Makefile")
    (tree / "scripts").mkdir()
    for name, text in (("install-deps", FAKE_INSTALL_DEPS), ("run-demo", FAKE_RUN_DEMO)):
        (tree / "scripts" / name).write_text(text)
        os.chmod(tree / "scripts" / name, 0o755)
    pcdir = tmp_path / "pkgconfig"
    pcdir.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES",
                        "PKG_CONFIG_PATH", "CFLAGS", "LDFLAGS")}
    env.update(PKG_CONFIG_LIBDIR=str(pcdir), REAL_PC_PATH=real_pc_path, LC_ALL="C")
    build = str(tmp_path / "build")
    # -O0: only whether it builds and links matters here, not the code
    args = ["make", "-j2", "BUILD=" + build, "OPT=-O0"]

    def make(*goals):
        return subprocess.run(args + list(goals), cwd=tree, env=env, capture_output=True,
                              timeout=1800)  # safety net only

    # before deps: pkg-config knows nothing; the build says so before compiling
    r = make("all")
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, r.stdout.decode(errors="replace")
    assert 'run "make deps"' in err, err[-3000:]
    assert not os.path.exists(os.path.join(build, "kurierd"))
    assert not os.path.exists(os.path.join(build, "obj")), "compiled without libraries"

    # Only files that include a library's headers from the folders pkg-config names
    # (-I/usr/include/postgresql, ...) tell whether the compiler got pkg-config's
    # answer. The objects of the others are those of this checkout's own build (make
    # check builds build/ first): taken from there when they are newer than every
    # header, the Makefile and their own source, so that make run compiles the files
    # that need the libraries (and kurierd and the CLI, which the copied Makefile
    # rebuilds), then links every program with pkg-config's -l flags.
    src = tree / "src"
    needs_pkg = []
    for path in sorted(src.rglob("*.c")):
        if re.search(r"^#include <(libpq-fe|hiredis/hiredis)\.h>", path.read_text(), re.M):
            needs_pkg.append(str(path.relative_to(src))[:-2] + ".o")
    assert len(needs_pkg) >= 2, needs_pkg
    seed = os.path.join(ROOT, "build", "obj")
    newest = max([os.path.getmtime(os.path.join(ROOT, "Makefile"))] +
                 [os.path.getmtime(h) for h in glob.glob(os.path.join(ROOT, "src", "**", "*.h"),
                                                         recursive=True)])
    for o in glob.glob(os.path.join(seed, "**", "*.o"), recursive=True):
        rel = os.path.relpath(o, seed)
        c = src / (rel[:-2] + ".c")
        if rel in needs_pkg or not c.exists():
            continue
        if os.path.getmtime(o) > max(newest, os.path.getmtime(c)):
            os.makedirs(os.path.join(build, "obj", os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(o, os.path.join(build, "obj", rel))

    # make run: deps installs, then the build finds the libraries
    r = make("run")
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, (out + err)[-4000:]
    assert "install-deps: installed" in out
    assert "examples/kurier.conf: ok" in out, out[-3000:]
    assert "undefined reference" not in err
    # the files that need the libraries' headers were compiled with pkg-config's flags
    cflags = subprocess.run(["pkg-config", "--cflags", "libpq", "hiredis"], capture_output=True,
                            check=True).stdout.decode().split()
    for obj in needs_pkg:
        line = [l for l in out.splitlines() if " -c -o %s/obj/%s " % (build, obj) in l]
        assert len(line) == 1 and all(f in line[0].split() for f in cflags), (obj, line, cflags)
