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
    assert a.cross_compile.endswith("-") and a.multiarch.startswith(a.host)
    assert a.qemu.binary.startswith("qemu-system-")


def test_unknown_arch_names_the_known_ones():
    with pytest.raises(BadInput, match="unknown architecture 'mips'; known: arm64, x86_64"):
        arch.get("mips")
