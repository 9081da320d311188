"""arm64 end to end on the default tree (linux-source-6.1): `build-kernel --arch arm64` cross-compiles
the minimal profile, verifies the release from vmlinux's linux_banner and the Image, and `package`
makes the DEB arm64 and RPM aarch64 sets with every check the x86_64 set passes (lintian, rpmlint,
shellcheck, grub-script-check, dpkg -x / rpm --root layouts), byte-identical over two clean runs.

The build is the session's `arm64_build` (tests/conftest.py). Packaging works on a private copy.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests import packagesets

from kbuild.build import verify
from kbuild.configure.checkconfig import check_config
from kbuild.core import arch
from kbuild.core.errors import CheckFailed
from kbuild.core.hashing import file_sha256
from kbuild.core.manifest import Manifest
from kbuild.core.source import locate
from kbuild.core.toolchain import Toolchain
from kbuild.package import stage as P

REPO = Path(__file__).resolve().parent.parent.parent
ARM64 = arch.get("arm64")
EM_AARCH64 = 183


@pytest.fixture(scope="module")
def built(arm64_build):
    return json.loads(arm64_build.path.read_text()), arm64_build


def artifact(data, name):
    return Path(next(a["path"] for a in data["artifacts"] if a["name"] == name))


def test_release_is_apart_from_x86_and_verified_from_the_banner(built):
    data, m = built
    rel, tree = data["release"]["release"], locate(None)
    assert rel == f"{tree.version}-arm64.kdump" and m.arch == "arm64" and m.path.parent.name == rel
    assert Path(data["build"]["dir"]).name == f"{tree.name}-minimal-arm64"
    got = subprocess.run(["make", "-s", "-C", str(tree.path), f"O={data['build']['dir']}",
                          *Toolchain.for_arch(ARM64).make_vars(), f"LOCALVERSION={data['release']['localversion']}",
                          "kernelrelease"], capture_output=True, text=True, check=True).stdout.strip()
    assert got == rel
    image = artifact(data, "Image")
    assert "bzImage" not in {a["name"] for a in data["artifacts"]}
    head = image.read_bytes()[:64]
    assert head[0x38:0x3C] == b"ARM\x64" and head[:2] == b"MZ"      # arm64 Image header with its EFI stub (CONFIG_EFI)
    assert data["build"]["image_version"].startswith(rel + " (kbuild@kdump-pipeline) (aarch64-linux-gnu-gcc")
    assert verify.check_banner_release(artifact(data, "vmlinux"), image, rel) == data["build"]["image_version"]
    with pytest.raises(CheckFailed, match="expected release"):
        verify.check_banner_release(artifact(data, "vmlinux"), image, "6.1.192-kdump")
    assert data["toolchain"]["cross_compile"] == "aarch64-linux-gnu-"
    assert "--arch arm64" in data["reproducer"]


def test_vmlinux_is_aarch64_with_dwarf_build_id_and_kdump_config(built):
    data, m = built
    vmlinux = artifact(data, "vmlinux")
    assert struct.unpack_from("<H", vmlinux.read_bytes()[:20], 18)[0] == EM_AARCH64
    assert verify.check_debug_info(vmlinux)[".debug_info"] > 1 << 20
    assert verify.elf_build_id(vmlinux) == m.build_id and len(m.build_id) == 40
    cfg = check_config(artifact(data, "config"), locate(None), Toolchain.for_arch(ARM64))
    assert cfg.ok, [r for r in cfg.results if not r.ok]
    values = dict(line.split("=", 1) for line in artifact(data, "config").read_text().splitlines()
                  if line.startswith("CONFIG_"))
    for sym in ("ARM64", "SERIAL_AMBA_PL011_CONSOLE", "PCI_HOST_GENERIC", "VIRTIO_PCI", "VIRTIO_BLK", "EXT4_FS",
                "SMP", "KEXEC_FILE", "CRASH_DUMP", "PROC_VMCORE"):
        assert values.get(f"CONFIG_{sym}") == "y", sym
    assert values["CONFIG_CC_VERSION_TEXT"].startswith('"aarch64-linux-gnu-gcc')
    assert any(a["name"].endswith("lkdtm.ko") for a in data["artifacts"])


def test_build_paths_do_not_leak_and_a_rerun_is_a_noop(built):
    data, m = built
    vmlinux = artifact(data, "vmlinux").read_bytes()
    assert data["build"]["dir"].encode() not in vmlinux
    from kbuild.build.stage import build_kernel
    from kbuild.core.settings import BuildSettings, ConfigureSettings
    again = build_kernel(BuildSettings.from_flags(ConfigureSettings.from_flags(arch="arm64")))
    assert again.up_to_date and again.manifest.build_id == m.build_id


def test_relink_from_the_same_objects_is_bit_identical(built, tmp_path):
    """Reproducible as on x86: deleting the linked outputs and rebuilding gives the same Image and build-id."""
    data, m = built
    before = {n: file_sha256(artifact(data, n)) for n in ("Image", "vmlinux")}
    build_dir = Path(data["build"]["dir"])
    for p in (build_dir / "vmlinux", build_dir / ARM64.image):
        p.unlink()
    from kbuild.build.stage import build_kernel
    from kbuild.core.settings import BuildSettings, ConfigureSettings
    again = build_kernel(BuildSettings.from_flags(ConfigureSettings.from_flags(arch="arm64"))).manifest
    assert again.build_id == m.build_id
    assert {n: again.artifact(n).sha256 for n in before} == before


@pytest.fixture(scope="module")
def snapshot(built, tmp_path_factory):
    """The build's manifest and artifacts copied aside, so packaging never races a rebuild."""
    data, _ = built
    data = json.loads(json.dumps(data))
    dest = tmp_path_factory.mktemp("arm64-build")
    for a in data["artifacts"]:
        copy = dest / "artifacts" / a["name"]
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a["path"], copy)
        a["path"] = str(copy)
    return data


def fresh_dist(data, where: Path) -> Manifest:
    out = where / "dist" / data["release"]["release"] / "manifest.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(data))
    return Manifest.read(out)


@pytest.fixture(scope="module")
def packaged(snapshot, tmp_path_factory):
    return P.package(fresh_dist(snapshot, tmp_path_factory.mktemp("arm64-packaged")), {"deb", "rpm"}), snapshot


def sh(*cmd) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def test_deb_arm64_and_rpm_aarch64_pass_every_check(packaged):
    result, data = packaged
    rel, debv = data["release"]["release"], data["release"]["deb_version"]
    assert sorted(p.name for p in result.packages) == packagesets.expected_names(data)
    checks = "\n".join(result.checks)
    for expected in ("lintian: 3 packages, no errors or warnings", "rpmlint: 3 packages, no errors or warnings",
                     "layout (dpkg -x)", "layout (rpm --root -i)", f"build-id {data['build']['build_id']}",
                     "no grub.conf", "architecture aa64", "grub-script-check: ok", "Image: EFI stub present"):
        assert expected in checks, expected
    debs = {p.name: p for p in result.packages}
    image_deb = debs[f"linux-image-{rel}_{debv}_arm64.deb"]
    assert sh("dpkg-deb", "-f", str(image_deb), "Architecture").strip() == "arm64"
    rpm = next(p for p in result.packages if p.name.startswith("kernel-kdump-pipeline-6"))
    assert sh("rpm", "-qp", "--qf", "%{ARCH}", str(rpm)) == "aarch64"
    assert {p.relative_to(result.dist / "boot").as_posix() for p in result.boot} == {
        "grub.d/zz-kdump-pipeline.cfg", f"loader/entries/{rel}.conf", "grub2-menuentry.cfg"}
    bls = (result.dist / "boot" / "loader" / "entries" / f"{rel}.conf").read_text()
    assert "architecture aa64\n" in bls and f"linux /vmlinuz-{rel}\n" in bls


def test_installed_vmlinuz_is_the_image_and_modules_are_stripped_for_aarch64(packaged, tmp_path):
    result, data = packaged
    rel = data["release"]["release"]
    deb = next(p for p in result.packages if p.name.startswith(f"linux-image-{rel}_"))
    sh("dpkg-deb", "-x", str(deb), str(tmp_path))
    assert file_sha256(tmp_path / "boot" / f"vmlinuz-{rel}") == next(
        a["sha256"] for a in data["artifacts"] if a["name"] == "Image")
    loop = next(tmp_path.glob(f"lib/modules/{rel}/**/loop.ko"))
    out = sh("readelf", "-h", "-S", "-W", str(loop))
    assert "AArch64" in out and ".debug_info" not in out


def test_two_clean_package_runs_are_byte_identical(snapshot, tmp_path):
    packagesets.assert_reproducible(
        lambda where: P.package(fresh_dist(snapshot, where), {"deb", "rpm"}, checks=False), tmp_path)


def test_cli_arch_flag_and_unknown_arch(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "invoke", "build-kernel", "--arch", "mips"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown architecture 'mips'; known: arm64, x86_64" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "invoke", "configure", "--arch", "arm64", "--profile", "server"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "profile 'server' has no arm64 variant" in proc.stderr


def test_arch_from_a_team_default_reaches_configure(tmp_path):
    """ProjectDefaults' `arch` key: INVOKE_KBUILD_ARCH=arm64 configures for arm64 like --arch arm64."""
    proc = subprocess.run([sys.executable, "-m", "invoke", "configure", "--build-dir", str(tmp_path / "b")],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "INVOKE_KBUILD_ARCH": "arm64"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CONFIG_ARM64=y\n" in (tmp_path / "b" / ".config").read_text()
    assert "cross-check (make olddefconfig): identical" in proc.stdout
