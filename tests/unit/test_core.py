"""kbuild.core's shared mechanisms: strict config loading, atomic publishing, sizes, makedumpfile's
options, and the tool registry that doctor and every stage read."""
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kbuild.core import config, fs, makedumpfile, sizes, tools
from kbuild.core.errors import BadInput, CheckFailed, MissingTool
from kbuild.core.paths import CONFIGS, REPO


@dataclass(frozen=True)
class Inner:
    size: str
    count: int = 1


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    tags: tuple[str, ...] = ()
    table: dict[str, Inner] | None = None


def test_config_builds_nested_dataclasses(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text('name = "a"\ntags = ["t"]\n[inner]\nsize = "1G"\n[table.k]\nsize = "2M"\ncount = 3\n')
    got = config.load(Outer, f)
    assert got.inner == Inner("1G") and got.tags == ("t",) and got.table["k"] == Inner("2M", 3)


@pytest.mark.parametrize("text, message", [
    ('name = "a"\nnmae = "b"\n[inner]\nsize = "1"\n', r"x.toml: unknown key\(s\) nmae; known: inner, name, table, tags"),
    ('name = "a"\n', r"x.toml: missing key\(s\) inner"),
    ('name = 3\n[inner]\nsize = "1"\n', r"x.toml: name: expected str, got 3"),
    ('name = "a"\n[inner]\nsize = "1"\ncount = "2"\n', r"x.toml: inner.count: expected int, got '2'"),
    ('name = "a"\n[inner]\nsize = "1"\ncount = true\n', r"inner.count: expected int, got True"),
    ('name = "a"\n[inner]\nsize = "1"\nextra = 1\n', r"x.toml: inner: unknown key\(s\) extra"),
    ('name = "a"\n[inner\n', r"x.toml: not valid TOML"),
])
def test_config_refuses_with_file_and_key(tmp_path, text, message):
    f = tmp_path / "x.toml"
    f.write_text(text)
    with pytest.raises(BadInput, match=message) as e:
        config.load(Outer, f)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["tools.toml", "crashtest.toml", "requirements.toml", "profiles/minimal.toml"])
def test_shipped_configs_load_strictly(name):
    """Every shipped settings file goes through the strict loader; a typo fails here first."""
    from kbuild.configure.requirements import RequirementsFile
    from kbuild.core.settings import ProfileFile
    from kbuild.crashtest.settings import CrashTestPolicy
    cls = {"tools.toml": tools.Registry, "crashtest.toml": CrashTestPolicy,
           "requirements.toml": RequirementsFile, "profiles/minimal.toml": ProfileFile}[name]
    assert config.load(cls, CONFIGS / name)


def test_a_typo_in_a_shipped_config_is_exit_2_naming_file_and_key(tmp_path):
    from kbuild.crashtest.settings import CrashTestPolicy
    bad = tmp_path / "crashtest.toml"
    bad.write_text((CONFIGS / "crashtest.toml").read_text().replace("kvm_probe_seconds", "kvm_probe_secs"))
    with pytest.raises(BadInput, match=r"crashtest.toml: guest: unknown key\(s\) kvm_probe_secs"):
        config.load(CrashTestPolicy, bad)


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    dest = tmp_path / "out.json"
    fs.write_atomic(dest, "old")
    with pytest.raises(RuntimeError):
        with fs.atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert dest.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]


def test_swap_dir_and_leftovers(tmp_path):
    final, staged = tmp_path / "boot", tmp_path / ".boot.new"
    final.mkdir(), staged.mkdir()
    (final / "a").write_text("old"), (staged / "a").write_text("new")
    fs.swap_dir(staged, final)
    assert (final / "a").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["boot"]
    dead = 2 ** 22 + 12345          # above Linux's largest pid_max: no such process
    (tmp_path / f".x.deb.{dead}.tmp").write_text("half")
    (tmp_path / f".crash-test.{dead}.old").mkdir()
    (tmp_path / f".y.rpm.{os.getpid()}.tmp").write_text("mine, still running")
    assert len(fs.remove_leftovers(tmp_path)) == 2
    assert sorted(os.listdir(tmp_path)) == [f".y.rpm.{os.getpid()}.tmp", "boot"]


@pytest.mark.parametrize("text, value", [("256M", 256 << 20), ("1g", 1 << 30), ("0x10000000", 256 << 20),
                                         ("4096K", 4 << 20), ("0", 0), ("1E", 1 << 60), (512, 512)])
def test_sizes_follow_memparse(text, value):
    assert sizes.parse(text) == value


@pytest.mark.parametrize("text, message", [("0400M", r"octal \(256M\)"), ("010M", r"octal \(8M\)"),
                                           ("12Q", "unexpected 'Q'"), ("", "expected"), ("16E", "64 bits")])
def test_sizes_refuse(text, message):
    with pytest.raises(sizes.SizeError, match=message):
        sizes.parse(text)


@pytest.mark.parametrize("collector, fmt", [
    ("makedumpfile -DE -d 31", "elf"),          # -D is a flag: E is the ELF option, not its value
    ("makedumpfile -pd 31", "kdump-compressed"),
    ("makedumpfile -c -d 31 -F", "flattened"),
    ("makedumpfile -x/tmp/vmlinuxE -d 1", "kdump-compressed"),   # E inside -x's value
])
def test_one_option_table_for_lint_and_format(collector, fmt):
    assert makedumpfile.expected_format(collector) == fmt == makedumpfile.parse(collector).output_format


def test_collector_parse():
    c = makedumpfile.parse("makedumpfile -cd 31 --message-level 1 --num-threads=2 -x /v")
    assert c.args == ("-cd", "31", "--message-level", "1", "--num-threads=2", "-x", "/v")
    assert c.dump_levels == (31,) and c.compression == ("-c",)
    assert ("--num-threads", "2") in c.options and ("-x", "/v") in c.options
    with pytest.raises(CheckFailed, match="unknown makedumpfile option -q"):
        makedumpfile.parse("makedumpfile -q")


def test_registry_knows_every_program_the_code_runs():
    """Every literal program name passed to run([...]) in kbuild/ is in configs/tools.toml, so
    doctor checks it and a missing one names its package."""
    reg = tools.registry()
    names = set()
    for f in (REPO / "kbuild").rglob("*.py"):
        names |= set(re.findall(r'\brun\(\[\s*"([\w.+-]+)"', f.read_text()))
    assert names and names <= set(reg.tool), sorted(names - set(reg.tool))
    for must in ("ldd", "dpkg", "rpm", "qemu-system-x86_64", "kexec"):
        assert must in reg.tool


def test_require_names_one_apt_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingTool, match=r"crash-test needs programs .* apt-get install .*busybox-static") as e:
        tools.require("crash-test")
    assert e.value.exit_code == 2


def test_doctor_lists_what_the_stages_need():
    out = subprocess.run([sys.executable, "-c", "from kbuild.core import tools; "
                          "print(tools.report(tools.survey())[0])"], capture_output=True, text=True, cwd=REPO)
    for name in ("ldd", "dpkg", "rpm", "makedumpfile", "lintian"):
        assert re.search(rf"^\S+\s+{re.escape(name)}\s", out.stdout, re.M), name
    assert Path(REPO / "configs" / "tools.toml").exists()


def test_config_messages_stay_one_printable_line(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text('name = "a"\n"evil\\nkey\\r" = 1\n[inner]\nsize = "1"\n')
    with pytest.raises(BadInput) as e:
        config.load(Outer, f)
    assert "'evil\\nkey\\r'" in str(e.value) and "\n" not in str(e.value) and "\r" not in str(e.value)
