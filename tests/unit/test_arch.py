"""configs/arches.toml: every arch is complete and consistent, and an unknown one is exit 2."""
import pytest

from kbuild.core import arch
from kbuild.core.errors import BadInput


def test_default_is_x86_64_with_bzimage():
    a = arch.get()
    assert (a.name, a.srcarch, a.image_name, a.deb_arch, a.rpm_arch) == ("x86_64", "x86", "bzImage", "amd64", "x86_64")


@pytest.mark.parametrize("name", sorted(arch.table()))
def test_each_arch_is_consistent(name):
    a = arch.get(name)
    assert a.image.startswith(f"arch/{a.srcarch}/boot/") and a.image_name == a.image_target
    assert a.defconfig.startswith(f"arch/{a.srcarch}/configs/") and a.release_from in arch.RELEASE_SOURCES
    assert a.localversion.endswith("kdump")
    assert a.cross_compile.endswith("-") and a.multiarch.startswith(a.host)
    assert a.qemu.binary.startswith("qemu-system-")


def test_unknown_arch_names_the_known_ones():
    with pytest.raises(BadInput, match="unknown architecture 'mips'; known: arm64, x86_64"):
        arch.get("mips")


# --- the arch plumbing: every stage reads the table -----------------------------------------

import json
import shutil
import subprocess

from kbuild.build import stage as build_stage
from kbuild.build import verify
from kbuild.core import tools
from kbuild.core.errors import CheckFailed, MissingTool
from kbuild.core.manifest import Manifest
from kbuild.core.settings import BuildSettings, ConfigureSettings, load_profile
from kbuild.core.toolchain import Toolchain
from kbuild.package.bootcfg import BootEntries
from kbuild.package.payload import Payload


def test_toolchain_for_arm64_is_the_cross_one_kbuild_and_kconfig_see():
    t = Toolchain.for_arch(arch.get("arm64"))
    assert t.make_vars()[:3] == ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "CC=aarch64-linux-gnu-gcc"]
    assert t.tool("objcopy") == "aarch64-linux-gnu-objcopy" and t.hostcc == "gcc"
    assert Toolchain.for_arch(arch.get()).make_vars()[:3] == ["ARCH=x86_64", "CROSS_COMPILE=", "CC=gcc"]
    assert (t.srcarch, Toolchain().srcarch, Toolchain(arch="riscv").srcarch) == ("arm64", "x86", "riscv")


def test_settings_keep_the_arches_apart():
    x86, arm = ConfigureSettings.from_flags(), ConfigureSettings.from_flags(arch="arm64")
    assert x86.default_build_dir("linux-6.1.192").name == "linux-6.1.192-minimal"
    assert arm.default_build_dir("linux-6.1.192").name == "linux-6.1.192-minimal-arm64"
    assert BuildSettings.from_flags(x86).localversion == "kdump"
    assert BuildSettings.from_flags(arm).localversion == "arm64.kdump"
    assert BuildSettings.from_flags(arm, localversion="mine").localversion == "mine"
    assert [f.name for f in arm.profile.fragments] == ["minimal-arm64.config", "crash-paths.config"]
    assert [f.name for f in x86.profile.fragments] == ["minimal.config", "crash-paths.config"]
    assert load_profile("defconfig", "arm64").fragments == load_profile("defconfig").fragments


def test_a_profile_without_the_arch_is_exit_2_naming_the_ones_that_have_it():
    with pytest.raises(BadInput, match="profile 'server' has no arm64 variant .* choose one of: defconfig, minimal"):
        ConfigureSettings.from_flags(profile="server", arch="arm64")


def test_a_profile_naming_an_unknown_arch_is_refused(tmp_path):
    from kbuild.core import config
    from kbuild.core.settings import ProfileFile
    path = tmp_path / "p.toml"
    path.write_text('description = "x"\nbase = "allnoconfig"\narches = ["x86_64", "sparc"]\n')
    with pytest.raises(BadInput, match="p.toml: unknown architecture 'sparc'"):
        config.load(ProfileFile, path)


def test_reproducer_names_the_arch_only_when_not_default(tmp_path):
    from kbuild.core.source import KernelTree, KernelVersion
    tree = KernelTree(tmp_path, KernelVersion(6, 1, 192, ""))
    arm = build_stage.reproducer(BuildSettings.from_flags(ConfigureSettings.from_flags(arch="arm64")), tree)
    x86 = build_stage.reproducer(BuildSettings.from_flags(ConfigureSettings.from_flags()), tree)
    assert "--arch arm64" in arm and "--arch" not in x86


def test_tools_cross_compiler_only_for_its_arch(monkeypatch):
    names = lambda a: {s.name for s in tools.survey(("build",), a)}
    assert "aarch64-linux-gnu-gcc" in names("arm64") and "aarch64-linux-gnu-gcc" not in names("x86_64")
    assert "aarch64-linux-gnu-gcc" in {s.name for s in tools.survey()}          # doctor lists everything
    real = tools.which
    monkeypatch.setattr(tools, "which", lambda n: None if n.startswith("aarch64-") else real(n))
    tools.require("build", arch="x86_64")
    with pytest.raises(MissingTool, match="apt-get install binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu"):
        tools.require("build", arch="arm64")


BANNER = b"Linux version 6.1.192-arm64.kdump (kbuild@kdump-pipeline) (aarch64-linux-gnu-gcc) #1 SMP\n"


@pytest.fixture
def banner_elf(tmp_path):
    """A real aarch64 ELF object carrying a linux_banner, as vmlinux does."""
    src = tmp_path / "v.c"
    src.write_text('const char pad[] = "xxxx";\nconst char linux_banner[] = "%s";\n'
                   % BANNER.decode().replace("\n", "\\n"))
    obj = tmp_path / "v.o"
    subprocess.run(["aarch64-linux-gnu-gcc", "-c", str(src), "-o", str(obj)], check=True)
    return obj


def test_banner_release_is_read_from_the_elf_and_found_in_the_image(tmp_path, banner_elf):
    assert verify.elf_symbol_bytes(banner_elf, "linux_banner") == BANNER + b"\0"
    image = tmp_path / "Image"
    image.write_bytes(b"MZ" + b"\0" * 100 + BANNER + b"\0" * 10)
    text = verify.check_image_release("linux-banner", image, banner_elf, "6.1.192-arm64.kdump")
    assert text.startswith("6.1.192-arm64.kdump (kbuild@kdump-pipeline)")
    with pytest.raises(CheckFailed, match="linux_banner says '6.1.192-arm64.kdump', expected release '6.1.192-kdump'"):
        verify.check_banner_release(banner_elf, image, "6.1.192-kdump")
    image.write_bytes(b"MZ" + BANNER.replace(b"#1", b"#2"))
    with pytest.raises(CheckFailed, match="does not contain vmlinux's linux_banner"):
        verify.check_banner_release(banner_elf, image, "6.1.192-arm64.kdump")
    with pytest.raises(CheckFailed, match="no symbol no_such_symbol"):
        verify.elf_symbol_bytes(banner_elf, "no_such_symbol")
    with pytest.raises(CheckFailed, match="not a little-endian ELF64"):
        verify.elf_symbol_bytes(image, "linux_banner")


def arm64_manifest(fake_manifest, root):
    path = fake_manifest(root, "6.1.192-arm64.kdump", rpm_version={"version": "6.1.192", "release": "arm64.kdump"})
    data = json.loads(path.read_text())
    data["toolchain"]["arch"] = "arm64"
    for a in data["artifacts"]:
        if a["name"] == "bzImage":
            a["name"] = "Image"
    path.write_text(json.dumps(data))
    return path


def test_payload_takes_the_arch_names_image_and_objcopy_from_the_table(tmp_path, fake_manifest):
    m = Manifest.read(arm64_manifest(fake_manifest, tmp_path))
    p = Payload.from_manifest(m)
    assert (p.deb_arch, p.rpm_arch, p.image, p.objcopy) == ("arm64", "aarch64", m.artifact("Image").path,
                                                            "aarch64-linux-gnu-objcopy")
    m = Manifest.read(fake_manifest(tmp_path / "x"))
    x86 = Payload.from_manifest(m)
    assert (x86.deb_arch, x86.rpm_arch, x86.image, x86.objcopy) == ("amd64", "x86_64", m.artifact("bzImage").path,
                                                                    "objcopy")


def test_payload_refuses_an_unknown_arch_or_a_missing_image(tmp_path, fake_manifest):
    path = arm64_manifest(fake_manifest, tmp_path)
    data = json.loads(path.read_text())
    data["toolchain"]["arch"] = "x86_64"                  # arm64 artifacts, x86 arch: no bzImage
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="manifest lists no bzImage"):
        Payload.from_manifest(Manifest.read(path))
    data["toolchain"]["arch"] = "mips"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="architecture 'mips' is not packaged .*known: arm64, x86_64"):
        Payload.from_manifest(Manifest.read(path))


def test_a_release_built_for_another_arch_is_not_replaced(tmp_path, fake_manifest):
    path = fake_manifest(tmp_path)                         # an x86_64 build of 6.1.192-kdump
    with pytest.raises(BadInput, match="holds a x86_64 build of this release; give the arm64 build its own --localversion"):
        build_stage._refuse_other_arch(path, arch.get("arm64"))
    build_stage._refuse_other_arch(path, arch.get("x86_64"))
    build_stage._refuse_other_arch(tmp_path / "none" / "manifest.json", arch.get("arm64"))


def test_boot_entries_follow_the_arch():
    assert (BootEntries.for_release("6.1.192-kdump", "256M").efi_arch, BootEntries.for_release(
        "6.1.192-kdump", "256M").legacy_grub) == ("x64", True)
    e = BootEntries.for_release("6.1.192-arm64.kdump", "256M", arch=arch.get("arm64"))
    assert (e.efi_arch, e.legacy_grub) == ("aa64", False)


def test_efi_stub_is_required_where_grub_on_efi_is_the_only_loader(tmp_path):
    from kbuild.package.bootcfg import check_efi_stub
    image = tmp_path / "Image"
    image.write_bytes(b"\x1f\x20\x03\xd5" + b"\0" * 60)              # an arm64 Image without CONFIG_EFI
    with pytest.raises(CheckFailed, match="no EFI stub .*GRUB on EFI cannot boot it on arm64: build with CONFIG_EFI=y"):
        check_efi_stub(image, arch.get("arm64"))
    assert "no EFI stub needed" in check_efi_stub(image, arch.get("x86_64"))
    image.write_bytes(b"MZ" + b"\0" * 62)
    assert "EFI stub present" in check_efi_stub(image, arch.get("arm64"))


def test_a_pie_vmlinux_is_recognised_for_rpmlint(tmp_path):
    from kbuild.package.rpm import is_pie
    src = tmp_path / "k.c"
    src.write_text("int start(void) { return 0; }\n")
    for flags, want in ((["-pie"], True), (["-no-pie", "-static"], False)):
        out = tmp_path / f"k{want}"
        subprocess.run(["aarch64-linux-gnu-gcc", "-nostdlib", "-fPIE" if want else "-fno-PIE", *flags,
                        "-Wl,-e,start", "-o", str(out), str(src)], check=True)
        assert is_pie(out) is want
