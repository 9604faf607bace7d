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


def _architecture():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
        return f.read()


def _include_rules(text):
    """The "What each module may include" table: {module: set of folders}."""
    section = text.split("## What each module may include", 1)[1].split("\n## ", 1)[0]
    rules = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("module", "") or set(cells[0]) <= set("-"):
            continue
        allowed = {m.strip() for m in cells[1].split(",")} - {"(nothing)"}
        rules[cells[0]] = allowed
    return rules


def test_architecture_include_rules_hold():
    """docs/architecture.md says which module may include which; src/ keeps to it."""
    rules = _include_rules(_architecture())
    assert rules.get("kurierd.c") == {"any"}, rules
    src = os.path.join(ROOT, "src")
    bad = []
    for module in sorted(os.listdir(src)):
        folder = os.path.join(src, module)
        if not os.path.isdir(folder):
            continue
        assert module in rules, f"src/{module}/ has no row in docs/architecture.md's include table"
        allowed = rules[module] | {module} | ({"core"} if module != "core" else set())
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".c", ".h")):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    line = line.strip()
                    if not line.startswith('#include "') or "/" not in line:
                        continue
                    target = line.split('"')[1].split("/")[0]
                    if target not in allowed:
                        bad.append(f"src/{module}/{name}:{n}: {module}/ includes {target}/")
    assert not bad, ("includes that docs/architecture.md does not allow (fix the code, or the "
                     "table if the dependency is intended):\n" + "\n".join(bad))


def test_architecture_names_every_source_file():
    """Every module folder and source file under src/ is named in docs/architecture.md, so
    the page follows the tree when files are added or moved."""
    text = _architecture()
    src = os.path.join(ROOT, "src")
    missing = []
    for module in sorted(os.listdir(src)):
        folder = os.path.join(src, module)
        if not os.path.isdir(folder):
            if module.endswith(".c") and module not in text:
                missing.append(f"src/{module}")
            continue
        if f"`{module}/`" not in text:
            missing.append(f"src/{module}/")
        for name in sorted(os.listdir(folder)):
            if name.endswith(".c") and name not in text:
                missing.append(f"src/{module}/{name}")
    assert not missing, "docs/architecture.md does not name: " + ", ".join(missing)
