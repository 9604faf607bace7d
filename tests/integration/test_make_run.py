#!/usr/bin/python3
"""What the README promises for `make run`: the demo config with its self-signed
certificate and demo mailbox, swaks to 2525 and to 2587 with STARTTLS and AUTH."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, wait_port

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
            wait_port("127.0.0.1", 2525, timeout=20, proc=p)
            wait_port("127.0.0.1", 2587, timeout=5, proc=p)
            time.sleep(0.3)
            a = subprocess.run(["swaks", "--server", "127.0.0.1:2525", "--to",
                                "demo@example.test"], capture_output=True, timeout=30)
            assert a.returncode == 0, a.stdout.decode()
            b = subprocess.run(["swaks", "--server", "127.0.0.1:2587", "--tls", "--auth",
                                "PLAIN", "--auth-user", "demo@example.test", "--auth-password",
                                "demo", "--from", "demo@example.test", "--to",
                                "demo@example.test"], capture_output=True, timeout=30)
            assert b.returncode == 0, b.stdout.decode()
            new = os.path.join(d, "var", "mail", "example.test", "demo", "Maildir", "new")
            deadline = time.time() + 15
            while time.time() < deadline and len(os.listdir(new) if os.path.isdir(new) else []) < 2:
                time.sleep(0.1)
            assert len(os.listdir(new)) == 2
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)
            log.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
