"""The kernel command line GRUB would boot: grub-mkconfig's logic run on the image's own files.

grub-mkconfig sources /etc/default/grub, then every /etc/default/grub.d/*.cfg in glob order
(kdump-tools' kdump-tools.cfg, then our zz-kdump-pipeline.cfg), and 10_linux writes
`linux /boot/vmlinuz-<rel> root=UUID=<fs uuid> ro $GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT`
for the default entry; GRUB puts BOOT_IMAGE= in front at boot. So crashkernel= comes from our
drop-in, never from the test.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kbuild.core.errors import CheckFailed
from kbuild.core.proc import run

# grub-mkconfig's own loop (util/grub-mkconfig.in), with sysconfdir pointing into the image.
_SOURCE = r'''
set -e
sysconfdir="$1/etc"
if test -f ${sysconfdir}/default/grub ; then
  . ${sysconfdir}/default/grub
fi
for x in ${sysconfdir}/default/grub.d/*.cfg ; do
  if [ -e "${x}" ]; then
    . "${x}"
  fi
done
printf '%s\0%s\0' "${GRUB_CMDLINE_LINUX}" "${GRUB_CMDLINE_LINUX_DEFAULT}"
'''


@dataclass(frozen=True)
class GrubCmdline:
    linux: str            # GRUB_CMDLINE_LINUX
    default: str          # GRUB_CMDLINE_LINUX_DEFAULT
    cmdline: str          # what the kernel gets

    @property
    def crashkernel(self) -> list[str]:
        return [w.split("=", 1)[1] for w in self.cmdline.split() if w.startswith("crashkernel=")]


def grub_cmdline(root: Path, release: str, uuid: str) -> GrubCmdline:
    res = run(["sh", "-c", _SOURCE, "sh", str(root)], check=False)
    parts = res.output.split("\0")
    if res.returncode != 0 or len(parts) < 3:
        raise CheckFailed(f"sourcing /etc/default/grub and grub.d/*.cfg of the image failed: "
                          f"{res.output.strip()[-300:]}")
    linux, default = parts[0], parts[1]
    line = f"BOOT_IMAGE=/boot/vmlinuz-{release} root=UUID={uuid} ro {linux} {default}"
    return GrubCmdline(linux, default, " ".join(line.split()))
