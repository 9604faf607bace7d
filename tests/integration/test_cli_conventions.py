#!/usr/bin/python3
"""The kurier command's conventions (issue 17, item 3): `kurier help [COMMAND]`,
--help on every command and subcommand, --version, global options before the command
(-c FILE in its spellings, -- ends them), usage errors that name the bad word with a
"did you mean", exit codes 0/1/2, `kurier reload` and `kurier stop` against a running
daemon, and the bash completion made from the same command table."""

import concurrent.futures
import os
import re
import socket
import subprocess

from conftest import KURIER, KURIERD, SAFETY, for_user


def run(*args, env=None, input=None):
    e = dict(os.environ)
    e.pop("KURIER_CONF", None)
    e.update(env or {})
    return subprocess.run([KURIER, *args], capture_output=True, text=True, env=e, input=input,
                          timeout=SAFETY)


def commands():
    """The command names `kurier help` lists."""
    out = run("help").stdout
    section = out.split("Commands:\n", 1)[1].split("Options", 1)[0]
    return [line.split()[0] for line in section.splitlines() if line.strip()]


def verbs(cmd):
    """The subcommands of cmd, from its help's usage lines."""
    r = run("help", cmd)
    assert r.returncode == 0, r.stderr
    found = []
    for line in r.stdout.splitlines():
        m = re.match(r"^(?:usage:)?\s*kurier %s ([a-z][a-z-]*)(?: |$)" % re.escape(cmd), line)
        if m and m.group(1) not in found:
            found.append(m.group(1))
    return found


def run_all(forms, input=None):
    """run(*form) for each form, a few at a time (each is a process of its own: under
    ASan most of its time is start-up, which the others overlap), results in order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda form: run(*form, input=input), forms))


def test_every_command_and_subcommand_has_help():
    cmds = commands()
    for expected in ("queue", "domain", "config", "reload", "stop", "help", "completion"):
        assert expected in cmds, cmds
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        cmd_verbs = dict(zip(cmds, pool.map(verbs, cmds)))
    checks = []  # (form, the usage line its help starts with)
    for cmd in cmds:
        # sendmail's -h is its hop count, as in every sendmail
        forms = ([cmd, "--help"], ["help", cmd]) + (() if cmd in ("sendmail", "mailq") else
                                                    ([cmd, "-h"],))
        checks += [(form, "usage: kurier %s" % cmd) for form in forms]
        for verb in cmd_verbs[cmd]:
            checks += [(form, "usage: kurier %s %s" % (cmd, verb))
                       for form in ([cmd, verb, "--help"], ["help", cmd, verb], [cmd, verb, "-h"])]
    nverbs = sum(len(v) for v in cmd_verbs.values())
    assert nverbs >= 40, nverbs
    # --help after other arguments still helps, without doing anything
    checks.append((["queue", "delete", "ALL", "--help"], "usage: kurier queue delete"))
    for (form, usage), r in zip(checks, run_all([form for form, _ in checks])):
        assert r.returncode == 0, (form, r.stdout, r.stderr)
        assert r.stdout.startswith(usage), (form, r.stdout)


def test_help_lists_commands_and_exit_codes():
    for form in (["help"], ["--help"], ["-h"]):
        r = run(*form)
        assert r.returncode == 0, r
        assert "0 done, 1 failed, 2 usage error" in r.stdout
    r = run()
    assert r.returncode == 2 and "no command given" in r.stderr


def test_misspelt_command_subcommand_and_option():
    r = run("queu", "list")
    assert r.returncode == 2
    assert 'unknown command "queu" (did you mean "queue"?)' in r.stderr, r.stderr
    r = run("queue", "lsit")
    assert r.returncode == 2
    assert 'unknown queue subcommand "lsit" (did you mean "list"?)' in r.stderr, r.stderr
    r = run("domian", "add", "example.org")
    assert r.returncode == 2 and 'did you mean "domain"' in r.stderr, r.stderr
    r = run("queue", "list", "--acount", "x")
    assert r.returncode == 2
    assert '"--acount" (did you mean "--account"?)' in r.stderr, r.stderr
    r = run("--confg", "x", "queue", "list")
    assert r.returncode == 2
    assert 'unknown option "--confg" (did you mean "--config"?)' in r.stderr, r.stderr
    r = run("help", "dkim", "keygne")
    assert r.returncode == 2 and 'did you mean "keygen"' in r.stderr, r.stderr
    # nothing close: the word is still named
    r = run("frobnicate")
    assert r.returncode == 2 and '"frobnicate"' in r.stderr and "did you mean" not in r.stderr
    r = run("queue", "flush", "now")
    assert r.returncode == 2
    assert 'unexpected argument "now" for "queue flush"' in r.stderr, r.stderr
    # a usage error the command finds itself names the command
    r = run("domain", "add")
    assert r.returncode == 2 and '"domain add"' in r.stderr, r.stderr


def test_usage_errors_name_the_missing_or_extra_word():
    """A missing operand is named as the synopsis names it, a word too many is quoted;
    option values ("--account USER") are not operands; exit 2 before anything runs."""
    cases = [
        (["queue", "show"], 'missing ID for "queue show"'),
        (["queue", "show", "A1", "x"], 'unexpected argument "x" for "queue show"'),
        (["queue", "show", "--body"], 'missing ID for "queue show"'),
        (["queue", "list", "--account", "u", "x"], 'unexpected argument "x" for "queue list"'),
        (["queue", "hold"], 'missing ID for "queue hold"'),
        (["domain", "add"], 'missing NAME for "domain add"'),
        (["domain", "add", "a.test", "b.test"], 'unexpected argument "b.test" for "domain add"'),
        (["domain", "catchall", "a.test"], 'missing ADDRESS|LOCALPART|off for "domain catchall"'),
        (["mailbox", "quota", "a@b.test"], 'missing SIZE for "mailbox quota"'),
        (["mailbox", "add", "--password", "pw"], 'missing ADDRESS for "mailbox add"'),
        (["mailbox", "forward"], 'missing ADDRESS for "mailbox forward"'),
        (["alias", "del", "a@b.test", "c@d.test", "x"], 'unexpected argument "x" for "alias del"'),
        (["relay", "add", "@b.test"], 'missing HOST[:PORT][,HOST[:PORT]...] for "relay add"'),
        (["greylist", "allow"], 'missing IP|NET for "greylist allow"'),
        (["greylist", "clear", "192.0.2.1", "x"], 'unexpected argument "x" for "greylist clear"'),
        (["dns", "lookup", "mx"], 'missing NAME for "dns lookup"'),
        (["dkim", "retire", "b.test"], 'missing SELECTOR for "dkim retire"'),
        (["spf", "check", "192.0.2.1"], 'missing SENDER for "spf check"'),
        (["smtp", "send", "--to", "h:25", "--from", "a", "--rcpt", "b"],
         'missing FILE for "smtp send"'),
        (["replies", "classify", "--code", "550"], 'missing TEXT for "replies classify"'),
        (["log", "trace", "--file", "-"], 'missing ID|MESSAGE-ID|ADDRESS for "log trace"'),
        (["check-client"], 'missing IP for "check-client"'),
        (["reload", "x"], 'unexpected argument "x" for "reload"'),
        (["config", "check", "a", "b"], 'unexpected argument "b" for "config check"'),
        (["help", "queue", "show", "x"], 'unexpected argument "x" for "help"'),
        # after "--" a word that looks like an option is an operand
        (["domain", "add", "--", "a.test", "--b"], 'unexpected argument "--b" for "domain add"'),
    ]
    results = run_all([["-c", "/nonexistent/kurier.conf", *argv] for argv, _ in cases])
    for (argv, message), r in zip(cases, results):
        assert r.returncode == 2, (argv, r.stdout, r.stderr)
        assert "kurier: " + message + "\n" in r.stderr, (argv, r.stderr)
        assert "bad arguments" not in r.stderr, (argv, r.stderr)
        assert 'Try "kurier help' in r.stderr, (argv, r.stderr)
    # operands that fit go on to the command (here: which fails on the missing config)
    fit = (["queue", "show", "--body", "A1"], ["mailbox", "forward", "a@b.test", "--off"],
           ["mailbox", "forward", "a@b.test", "c@d.test", "e@f.test", "--keep"],
           ["greylist", "clear", "--sender", "a@b.test"], ["mailbox", "list"],
           ["dkim", "list"], ["relay", "add", "@b.test", "h:587", "--user", "u", "--tls",
                              "may", "--password-stdin"])
    results = run_all([["-c", "/nonexistent/kurier.conf", *argv] for argv in fit], input="pw\n")
    for argv, r in zip(fit, results):
        assert r.returncode == 1, (argv, r.stdout, r.stderr)
        assert "missing" not in r.stderr and "unexpected" not in r.stderr, (argv, r.stderr)


SRC_CLI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "cli")


def test_every_subcommand_in_the_code_is_in_the_table():
    """The subcommands each cmd_*() compares its verb with are exactly those of the
    command table (a verb missing from the table is unreachable, one missing from the
    code an error), and every cmd_*() is a command of the table."""
    import glob
    cmds = commands()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        table = dict(zip(cmds, pool.map(verbs, cmds)))
    checked = 0
    for path in sorted(glob.glob(os.path.join(SRC_CLI, "cmd_*.c"))):
        with open(path) as f:
            src = f.read()
        for m in re.finditer(r"^int cmd_(\w+)\(int argc, char \*\*argv\)\n\{\n(.*?)^\}\n",
                             src, re.M | re.S):
            name, body = m.group(1).replace("_", "-"), m.group(2)
            if name == "dns-records":  # "dns records", called by cmd_dns() with argv + 1
                assert "records" in table["dns"]
                continue
            assert name in cmds, (path, name, cmds)
            said = set(re.findall(r'strcmp\((?:argv\[1\]|verb|pos\[0\]), "([a-z][a-z-]*)"\)',
                                  body))
            if not said:
                assert table[name] == [], (name, "takes subcommands its code does not compare")
                continue
            assert said == set(table[name]), (path, name, sorted(said), table[name])
            checked += 1
    assert checked >= 20, checked


def test_version():
    r = run("--version")
    assert r.returncode == 0
    m = re.fullmatch(r"kurier (\d+\.\d+\.\d+)\n", r.stdout)
    assert m, r.stdout
    assert run("-V").stdout == r.stdout
    d = subprocess.run([KURIERD, "--version"], capture_output=True, text=True, timeout=SAFETY)
    assert d.returncode == 0 and d.stdout == "kurierd %s\n" % m.group(1)
    d = subprocess.run([KURIERD, "-x"], capture_output=True, text=True, timeout=SAFETY)
    assert d.returncode == 2 and "-- 'x'" in d.stderr, d.stderr
    d = subprocess.run([KURIERD, "stray"], capture_output=True, text=True, timeout=SAFETY)
    assert d.returncode == 2 and '"stray"' in d.stderr, d.stderr


def test_global_options_before_the_command(kurier_factory):
    k = kurier_factory()
    k.add_domain("example.test")
    for form in (["-c", k.conf], ["--config", k.conf], ["--config=" + k.conf], ["-c" + k.conf],
                 ["-c", k.conf, "--"]):
        r = run(*form, "domain", "list")
        assert r.returncode == 0, (form, r.stderr)
        assert "example.test" in r.stdout, (form, r.stdout)
    # after "--" a word is the command even when it looks like an option
    r = run("-c", k.conf, "--", "--version")
    assert r.returncode == 2 and 'unknown command "--version"' in r.stderr, r.stderr
    r = run("-c")
    assert r.returncode == 2 and "-c needs a FILE" in r.stderr


def test_reload_and_stop_over_the_control_socket(kurier_factory):
    k = kurier_factory()
    k.start()
    version = run("--version").stdout.split()[1]
    assert "daemon started: kurier %s," % version in k.log()

    r = k.cli("reload")
    assert r.stdout.decode().strip() == "kurierd: reloaded"
    k.wait_log("reloaded configuration from")

    # a broken file: the command names the error and does not ask; the daemon,
    # asked anyway, refuses and says so; it keeps running
    good = open(k.conf).read()
    with open(k.conf, "a") as f:
        f.write("limits { recipients many; }\n")
    r = k.cli("reload", check=False)
    assert r.returncode == 1, r
    assert 'invalid value "many" for "recipients"' in r.stderr.decode(), r.stderr
    sock = os.path.join(k.dir, "var", "control.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(SAFETY)
        s.connect(sock)
        s.sendall(b"reload\n")
        assert s.makefile().readline().startswith("error reload refused")
    k.wait_log("reload refused, keeping the running configuration")
    with open(k.conf, "w") as f:
        f.write(good)
    assert k.proc.poll() is None

    # only root and the daemon's user may stop it
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        for_user(KURIER), "-c", k.conf, "stop"], capture_output=True, text=True,
                       timeout=SAFETY)
    assert r.returncode == 1 and "permission denied" in r.stderr, r
    assert k.proc.poll() is None

    r = k.cli("stop")
    assert r.stdout.decode().strip() == "kurierd: stopped"
    # "stop" returns once the daemon has gone
    assert k.proc.poll() is not None or k.proc.wait(timeout=SAFETY) == 0
    assert k.proc.returncode == 0
    assert "stop requested by admin" in k.log() and "stopped" in k.log()
    r = k.cli("stop", check=False)
    assert r.returncode == 1 and "not running" in r.stderr.decode(), r
    r = k.cli("reload", check=False)
    assert r.returncode == 1 and "not running" in r.stderr.decode(), r
    r = k.cli("stop", "now", check=False)
    assert r.returncode == 2 and '"now"' in r.stderr.decode(), r


def complete(script, *words):
    """What bash completes for the last of words, with the generated script."""
    line = " ".join(words)
    prog = (script + "\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\nCOMP_LINE='%s'\nCOMP_POINT=%d\n"
            "_kurier\nprintf '%%s\\n' \"${COMPREPLY[@]}\"\n") % (
        " ".join("'%s'" % w for w in words), len(words) - 1, line, len(line))
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True,
                       text=True, timeout=SAFETY)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion_from_the_command_table():
    r = run("completion", "bash")
    assert r.returncode == 0
    script = r.stdout
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert complete(script, "kurier", "qu") == ["queue"]
    assert complete(script, "kurier", "-c", "x.conf", "queue", "l") == ["list"]
    assert complete(script, "kurier", "queue", "list", "--a") == ["--account"]
    assert "unlock" in complete(script, "kurier", "account", "")
    assert complete(script, "kurier", "dkim", "keygen", "example.org", "--s") == ["--selector"]
    for cmd in commands():
        assert cmd in complete(script, "kurier", ""), cmd
    # the file make builds and installs is this script
    with open(os.path.join(os.path.dirname(KURIER), "kurier.bash")) as f:
        assert f.read() == script
