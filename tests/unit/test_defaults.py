"""Project defaults from invoke's config files (kbuild: section), flags, and the build-folder lock."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from invoke import Config

from kbuild.core import defaults, lock
from kbuild.core.cli import core_args
from kbuild.core.errors import BadInput
from kbuild.core.settings import BuildSettings, ConfigureSettings, as_int

REPO = Path(__file__).resolve().parents[2]


def config_with(tmp_path, project=None, user=None, runtime=None, env=None):
    """A real invoke Config loaded the way the CLI loads it, from files we write."""
    if user is not None:
        (tmp_path / "user.invoke.yaml").write_text(user)     # invoke reads <user_prefix>invoke.yaml
    if runtime is not None:
        (tmp_path / "runtime.yaml").write_text(runtime)
    c = Config(defaults=None, overrides=None, system_prefix=str(tmp_path / "nosystem."),
               user_prefix=str(tmp_path / "user."), project_location=None,
               runtime_path=str(tmp_path / "runtime.yaml") if runtime else None)
    if project is not None:
        c.set_project_location(str(tmp_path / "proj"))
        (tmp_path / "proj").mkdir()
        (tmp_path / "proj" / "invoke.yaml").write_text(project)
    c.load_collection(defaults.placeholders())
    c.load_system(), c.load_user(), c.load_project(), c.load_runtime()
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        c.load_shell_env()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return c


def test_layers_later_wins_and_records_where(tmp_path):
    c = config_with(tmp_path, user="kbuild:\n  localversion: user\n  jobs: 3\n",
                    project="kbuild:\n  localversion: acme\n  build_number: 7\n",
                    runtime="kbuild:\n  build_number: 8\n")
    r = defaults.resolve(c)
    assert r.values == {"localversion": "acme", "jobs": 3, "build_number": 8}
    assert r.origins["localversion"].startswith("project config") and r.origins["jobs"].startswith("user config")
    assert r.origins["build_number"].startswith("runtime config")


def test_environment_variables_are_typed(tmp_path):
    c = config_with(tmp_path, env={"INVOKE_KBUILD_BUILD_NUMBER": "9", "INVOKE_KBUILD_LOCALVERSION": "ci"})
    r = defaults.resolve(c)
    assert r.values == {"build_number": 9, "localversion": "ci"} and "INVOKE_KBUILD" in r.origins["build_number"]


@pytest.mark.parametrize("text, message", [
    ("kbuild:\n  localverison: acme\n", r"unknown key\(s\) localverison"),
    ("kbuild:\n  build_number: seven\n", r"build_number: expected int, got 'seven'"),
    ("kbuild:\n  jobs: true\n", r"jobs: expected int, got True"),
    ("kbuild:\n  fragment: one.config\n", r"fragment: expected a list"),
])
def test_a_bad_key_or_type_names_the_file_and_key(tmp_path, text, message):
    c = config_with(tmp_path, project=text)
    with pytest.raises(BadInput, match=message) as e:
        defaults.resolve(c)
    assert "invoke.yaml" in str(e.value) and e.value.exit_code == 2


def test_a_bad_environment_value_is_exit_2(tmp_path):
    c = config_with(tmp_path, env={"INVOKE_KBUILD_JOBS": "many"})
    with pytest.raises(BadInput, match=r"INVOKE_KBUILD_JOBS.*'many' is not a valid int"):
        defaults.resolve(c)


def invoke(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, message", [
    (("build-kernel", "--jobs", "abc"), "error: --jobs 'abc': expected a whole number"),
    (("build-kernel", "--jobs", "0"), "error: --jobs '0': must be at least 1"),
    (("build-kernel", "--build-number", "-1"), "error: --build-number '-1': must be at least 0"),
    (("crash-test", "--timeout", "soon"), "error: --timeout 'soon': expected seconds"),
])
def test_numeric_flags_given_text_are_one_line_and_exit_2(args, message):
    proc = invoke(*args)
    assert proc.returncode == 2 and proc.stderr.strip() == message, proc.stderr


def test_a_runtime_config_file_error_reaches_the_user_as_one_line(tmp_path):
    bad = tmp_path / "team.yaml"
    bad.write_text("kbuild:\n  localverison: acme\n")
    proc = invoke("-f", str(bad), "release-check", "--release", "6.1.192-kdump")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"error: runtime config (-f) {bad}: kbuild: unknown key(s) localverison")


def test_as_int():
    assert as_int("7", "--x") == 7 and as_int(None, "--x") is None and as_int(3, "--x", 1) == 3
    for bad in ("7.5", 2.5, True, "x"):
        with pytest.raises(BadInput, match="expected a whole number"):
            as_int(bad, "--x")


def test_settings_record_origins():
    s = BuildSettings.from_flags(ConfigureSettings.from_flags(), localversion="acme",
                                 origins={"localversion": "project config x/invoke.yaml"})
    assert s.localversion == "acme" and s.origins == {"localversion": "project config x/invoke.yaml"}


@pytest.mark.parametrize("argv, core", [
    (["invoke", "crash-test", "-d", "x.toml"], []),
    (["invoke", "-d", "crash-test"], ["-d"]),
    (["invoke", "-f", "team.yaml", "--debug", "build-kernel", "--jobs", "2"], ["-f", "--debug"]),
])
def test_only_invokes_own_options_count_as_debug(argv, core):
    assert core_args(argv) == core


def test_second_writer_waits_and_says_for_whom(tmp_path, capsys):
    order = []
    with lock.exclusive(tmp_path, "build-kernel"):
        def second():
            with lock.exclusive(tmp_path, "build-kernel"):
                order.append("second")
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        order.append("first done")
    t.join(10)
    assert order == ["first done", "second"]
    assert f"in use by pid {os.getpid()} (build-kernel, started" in capsys.readouterr().err


def test_no_wait_refuses_at_once(tmp_path):
    with lock.exclusive(tmp_path, "package"):
        code = ("import sys; from pathlib import Path; from kbuild.core import lock\n"
                "try:\n  lock.exclusive(Path(sys.argv[1]), 'package', wait=False).__enter__()\n"
                "except lock.Busy as e:\n  print(e); sys.exit(e.exit_code)\n")
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and f"in use by pid {os.getpid()} (package" in proc.stdout


def test_a_dead_holders_lock_never_blocks(tmp_path):
    code = ("import os, sys; from pathlib import Path; from kbuild.core import lock\n"
            "lock.exclusive(Path(sys.argv[1]), 'build-kernel').__enter__(); os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO).returncode == 9
    with lock.exclusive(tmp_path, "build-kernel", wait=False):
        pass


@pytest.mark.parametrize("section, kind", [("kbuild:\n  - acme\n", "list"), ("kbuild: [1, 2]\n", "list")])
def test_a_kbuild_section_that_is_not_a_mapping_is_one_line_not_invokes_traceback(tmp_path, section, kind):
    """invoke merges config files outside any task: its AmbiguousMergeError must still be one line."""
    bad = tmp_path / "team.yaml"
    bad.write_text(section)
    proc = invoke("-f", str(bad), "doctor")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: invoke config: a `kbuild:` section")
    assert proc.stderr.strip().endswith(f"not a {kind}")
