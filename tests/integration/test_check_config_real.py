"""check-config against real configs: Debian's own 6.1 kernel passes, tinyconfig fails."""
import json
import subprocess
import sys

from kbuild.configure.checkconfig import check_config
from kbuild.core.toolchain import Toolchain
from tests.integration.test_configure_real import REPO


def test_debian_61_kernel_config_passes(debian_config_61, tree61):
    result = check_config(debian_config_61, tree61)
    assert result.ok, result.lines()
    assert {r.capability for r in result.results} >= {"crash-dump", "debug-info", "no-debug-info-reduced"}


def test_tinyconfig_fails_with_reasons(tree61, tmp_path):
    build = tmp_path / "tiny"
    subprocess.run(["make", "-s", "-C", str(tree61.path), f"O={build}", *Toolchain().make_vars(), "tinyconfig"],
                   check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "invoke", "check-config", "--config", str(build / ".config"),
                           "--source", str(tree61.path), "--json"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    failed = {r["capability"]: r["why"] for r in data["results"] if not r["ok"]}
    assert "crash-dump" in failed and "debug-info" in failed
    assert "CONFIG_CRASH_DUMP is not set (arch/x86/Kconfig:" in failed["crash-dump"]
    assert [w["capability"] for w in data["warnings"]] == ["smp"]   # tinyconfig is uniprocessor
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_check_config_text_output_one_line_per_capability(debian_config_61, tree61):
    proc = subprocess.run([sys.executable, "-m", "invoke", "check-config", "--config", str(debian_config_61),
                           "--source", str(tree61.path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 12 and all(l.startswith("PASS") for l in lines)


def test_uniprocessor_config_warns_but_passes(debian_config_61, tree61, tmp_path):
    """A UP kernel is a warning, not a failure: kdump works, but its CPU-stop path goes untested."""
    text = debian_config_61.read_text()
    assert "CONFIG_SMP=y\n" in text
    up = tmp_path / "config-up"
    up.write_text(text.replace("CONFIG_SMP=y\n", "# CONFIG_SMP is not set\n"))
    proc = subprocess.run([sys.executable, "-m", "invoke", "check-config", "--config", str(up),
                           "--source", str(tree61.path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    warn = [ln for ln in proc.stdout.splitlines() if ln.startswith("WARN")]
    assert len(warn) == 1 and "CONFIG_SMP is not set (arch/x86/Kconfig:" in warn[0]
    assert "CPU-stop path" in warn[0] and "untested" in warn[0]
    assert check_config(debian_config_61, tree61).warnings == []
