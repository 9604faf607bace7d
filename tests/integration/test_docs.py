#!/usr/bin/python3
"""The generated reference stays in step with the key table, and the bundled example
config is valid: what a new user reads is what kurier does."""

import os
import subprocess

from conftest import KURIER

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_config_reference_is_current():
    out = subprocess.run([KURIER, "config", "doc"], capture_output=True, check=True).stdout
    with open(os.path.join(ROOT, "docs", "config.md"), "rb") as f:
        assert f.read() == out, "docs/config.md is stale: run make docs/config.md"


def test_example_config_is_valid():
    r = subprocess.run([KURIER, "config", "check", os.path.join(ROOT, "examples", "kurier.conf")],
                       capture_output=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr.decode()
