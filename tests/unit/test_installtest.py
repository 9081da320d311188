"""install-test logic without a VM: GRUB's command line, the hook record, the console verdicts,
the report, the settings and the kernel fitness check. The e2e test boots the real thing."""
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.manifest import Manifest
from kbuild.crashtest.qemu import ConsoleLine
from kbuild.crashtest.report import Check, Failure
from kbuild.installtest import cmdline, guest, install, stage, verify
from kbuild.installtest.report import InstallReport
from kbuild.installtest.settings import InstallTestSettings, policy
from kbuild.installtest.watch import PHASES, Watch, diagnose
from kbuild.package import bootcfg
from kbuild.package.render import render

REL = "6.1.192-server.kdump"


def image_root(tmp_path: Path, crashkernel="256M") -> Path:
    """/etc/default/grub as the test writes it, kdump-tools' drop-in, and ours."""
    root = tmp_path / "root"
    (root / "etc/default/grub.d").mkdir(parents=True)
    site = policy().site
    install.site_files(root, site, "1234")
    (root / "etc/default/grub.d/kdump-tools.cfg").write_text(bootcfg.KDUMP_TOOLS_DROPIN)
    e = bootcfg.BootEntries.for_release(REL, crashkernel)
    (root / "etc/default/grub.d" / e.dropin_name).write_text(bootcfg.grub_dropin(e))
    return root


def test_grub_cmdline_is_grub_mkconfigs_with_our_crashkernel_only(tmp_path):
    line = cmdline.grub_cmdline(image_root(tmp_path), REL, "u-u-i-d")
    assert line.cmdline == f"BOOT_IMAGE=/boot/vmlinuz-{REL} root=UUID=u-u-i-d ro console=ttyS0,115200 crashkernel=256M"
    assert line.crashkernel == ["256M"] and line.linux == "console=ttyS0,115200"


def test_admin_edit_of_the_dropin_changes_the_reservation(tmp_path):
    root = image_root(tmp_path)
    guest.set_crashkernel(root, bootcfg.BootEntries.for_release(REL, "256M").dropin_name, "40M")
    assert cmdline.grub_cmdline(root, REL, "x").crashkernel == ["40M"]


def test_set_crashkernel_refuses_a_dropin_it_cannot_edit(tmp_path):
    root = image_root(tmp_path)
    name = bootcfg.BootEntries.for_release(REL, "256M").dropin_name
    (root / "etc/default/grub.d" / name).write_text("# edited away\n")
    with pytest.raises(CheckFailed, match="no single crashkernel"):
        guest.set_crashkernel(root, name, "40M")


def test_a_broken_grub_file_is_one_error(tmp_path):
    root = image_root(tmp_path)
    (root / "etc/default/grub.d/broken.cfg").write_text("if then\n")
    with pytest.raises(CheckFailed, match="sourcing /etc/default/grub"):
        cmdline.grub_cmdline(root, REL, "x")


def test_hook_record_is_parsed():
    text = (f"args: {REL} /boot/vmlinuz-{REL}\nDEB_MAINT_PARAMS=configure  INITRD=Yes\n"
            "kdump-tools: Generating /var/lib/kdump/initrd.img\nmkinitramfs: MODULES dep requires mounted sysfs on /sys\n"
            "rc: 1\n")
    (call,) = install.parse_hook_log(text)
    assert call.args == (REL, f"/boot/vmlinuz-{REL}") and call.deb_maint_params == "configure"
    assert call.initrd == "Yes" and call.rc == 1 and "MODULES dep" in call.output


def test_wrapper_and_agent_render_and_pass_sh_n(tmp_path):
    for name, ctx in (("kdump-hook-wrapper.sh.j2", {"log": "/l", "real": "/r"}),
                      ("guest-agent.sh.j2", {"mark": guest.MARK, "state": "/s", "coredir": "/var/crash",
                                             "ready_timeout": 5, "remove": []}),
                      ("guest-agent.sh.j2", {"mark": guest.MARK, "state": "/s", "coredir": "/var/crash",
                                             "ready_timeout": 5, "remove": ["linux-image-x", "linux-image-x-dbg"]})):
        p = tmp_path / name
        p.write_text(render(f"installtest/{name}", **ctx))
        assert subprocess.run(["sh", "-n", str(p)]).returncode == 0
        lint = subprocess.run(["shellcheck", "-s", "sh", str(p)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout


def feed(w: Watch, lines: list[str]) -> None:
    for i, text in enumerate(lines):
        w(ConsoleLine(float(i), text))


FIRST = ["[    0.000000] Linux version 6.1.192 (x) #1 SMP", "[   12.0] kdump-tools[146]: loaded kdump kernel.",
         "INSTALL-TEST: BOOTED 6.1.192 nonce n", "INSTALL-TEST: READY after 0s", "INSTALL-TEST: CRASH",
         "[   68.770308] sysrq: Trigger a crash", "[    0.000000] Linux version 6.1.192 (x) #1 SMP"]


def test_watch_follows_a_good_run():
    w = Watch(300, None)
    feed(w, FIRST + ["[   10.0] kdump-tools[161]: running makedumpfile --dump-dmesg /proc/vmcore /var/crash/2/dmesg.2.",
                     "[   10.1] kdump-tools[161]: running makedumpfile -c --message-level 1 -d 31 -F /proc/vmcore | "
                     "compress > /var/crash/2/dump-incomplete.",
                     "[   12.2] kdump-tools[161]: kdump-tools: saved vmcore in /var/crash/2.",
                     "[   12.3] reboot: Restarting system", "[    0.000000] Linux version 6.1.192 (x) #1 SMP",
                     "\x1b[0;32mINSTALL-TEST: DUMP-PRESENT /var/crash/2/dump.2"])
    assert w.makedumpfile == "-c --message-level 1 -d 31 -F"
    assert diagnose(w, 0, False, 900) == ("dump saved", None)
    assert list(w.timings(14.0)) == ["first_boot", "kdump_ready", "crash", "capture", "second_boot"]


def test_a_failed_capture_that_reboots_is_named():
    w = Watch(300, None)     # panic= on the capture line: a capture panic does not cut the wait short
    feed(w, FIRST + ["[    0.52] swapper/0 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL)",
                     "[    0.53] Kernel panic - not syncing: System is deadlocked on memory",
                     "[    0.53] Rebooting in 10 seconds..", "[    0.000000] Linux version 6.1.192 (x) #1 SMP",
                     "INSTALL-TEST: NO-DUMP capture failed, machine rebooted"])
    outcome, (phase, why) = diagnose(w, 0, False, 900)
    assert outcome == "capture failed, machine rebooted" and phase == "capture" and "oom-killer" in why


def test_a_capture_kernel_that_hangs_asks_for_panic():
    w = Watch(300, 30.0)
    feed(w, FIRST[:-1])
    assert w(ConsoleLine(9.0, FIRST[-1])) is not None                  # capture banner: bounded wait
    assert w(ConsoleLine(9.5, "[    0.53] Kernel panic - not syncing: System is deadlocked on memory")) is not None
    outcome, (phase, why) = diagnose(w, None, False, 900, stopped=True)
    assert outcome == "capture failed, machine hung" and phase == "capture" and "panic=" in why
    assert "stopped waiting 30s after it" in why


@pytest.mark.parametrize("lines,phase", [(FIRST[:1], "first_boot"), (FIRST[:3], "kdump_ready"),
                                         (FIRST[:6], "crash")])
def test_an_early_stop_names_its_phase(lines, phase):
    w = Watch(300, None)
    feed(w, lines)
    assert diagnose(w, 0, False, 900)[1][0] == phase


def test_report_junit_marks_the_failed_phase_and_skips():
    r = InstallReport(REL, "ab", "n", "40M", outcome="capture failed, machine rebooted",
                      timings={"rootfs": 1.0, "install": 2.0, "first_boot": 3.0},
                      checks=[Check("kdump-settings", True, "x", "x")], skipped={"crash-bt": "UP kernel"},
                      failure=Failure("capture", "capture failed, machine rebooted"), serial_tail=["last line"])
    suite = ET.fromstring(r.to_junit())
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert [c for c in cases if c in PHASES] == list(PHASES)
    assert cases["capture"].find("failure").get("message") == "capture failed, machine rebooted"
    assert cases["crash-bt"].find("skipped").get("message") == "UP kernel"
    assert json.loads(r.to_json())["verdict"] == "fail"


def test_settings_refuse_bad_flags():
    with pytest.raises(BadInput, match="--accel"):
        InstallTestSettings.from_flags(accel="xen")
    with pytest.raises(BadInput, match="below the guest memory"):
        InstallTestSettings.from_flags(crashkernel="4G")
    with pytest.raises(BadInput, match="not both"):
        InstallTestSettings.from_flags(crashkernel="96M", find_crashkernel=True)
    assert InstallTestSettings.from_flags(crashkernel="96M").crashkernel == 96 << 20


def test_kdump_args_and_panic_timeout():
    assert verify.kdump_args("-c -d 31") == "-c -d 31 -F"
    assert verify.kdump_args("-F -c -d 31") == "-F -c -d 31"
    assert stage.panic_timeout("irqpoll nr_cpus=1 panic=10 systemd.unit=x") == 10
    assert stage.panic_timeout("irqpoll nr_cpus=1") == 0


def test_crash_support_names_its_skips():
    assert verify.crash_support({"SMP": "y"}, (6, 1), "6.1") == ""
    assert "uniprocessor" in verify.crash_support({}, (6, 1), "6.1")
    assert "6.12" in verify.crash_support({"SMP": "y"}, (6, 12), "6.1")


def test_fitness_refuses_a_kernel_that_cannot_boot_debian(tmp_path, fake_manifest):
    m = Manifest.read(fake_manifest(tmp_path))
    with pytest.raises(CheckFailed, match="--profile server"):
        stage.fitness(m)


def test_server_profile_holds_every_need():
    text = (Path(__file__).resolve().parents[2] / "configs/fragments/server.config").read_text()
    minimal = (Path(__file__).resolve().parents[2] / "configs/fragments/minimal.config").read_text()
    both = text + minimal
    missing = [s for s in policy().needs if f"CONFIG_{s}=y" not in both]
    assert missing == []


def test_bisect_finds_the_smallest_working_step():
    from kbuild.installtest.sizing import bisect
    tried = []

    def works(size):
        tried.append(size)
        return size >= 48
    assert bisect(16, 256, 8, works) == 48
    assert all(s % 8 == 0 for s in tried) and len(tried) <= 6
    assert bisect(16, 24, 8, works) == 24 and tried[-1] != 24    # high is trusted, never retried


def test_purge_ignores_only_records_that_are_not_ours():
    from kbuild.installtest.purge import BOOKKEEPING
    for p in ("/var/log/dpkg.log", "/var/lib/ucf/hashfile.1", "/var/lib/dpkg/status-old",
              "/var/lib/kdump/initramfs-tools/conf.d/zzz-kdump", f"{install.STATE}/kdump-hook.log"):
        assert BOOKKEEPING.match(p), p
    for p in (f"/boot/initrd.img-{REL}", f"/var/lib/kdump/initrd.img-{REL}", f"/lib/modules/{REL}",
              "/etc/default/grub.d/zz-kdump-pipeline.cfg", "/etc/default/kdump-tools.ucf-dist",
              "/var/lib/kdump/initrd.img"):
        assert not BOOKKEEPING.match(p), p


def test_agent_is_enabled_with_its_nonce(tmp_path):
    guest.add_agent(tmp_path, "n0nce", "/var/crash", 5)
    link = tmp_path / "etc/systemd/system/multi-user.target.wants" / guest.UNIT
    assert link.is_symlink() and str(link.readlink()) == f"/etc/systemd/system/{guest.UNIT}"
    assert (tmp_path / install.STATE.lstrip("/") / "nonce").read_text() == "n0nce\n"
    assert (tmp_path / guest.AGENT.lstrip("/")).stat().st_mode & 0o111


def test_deb_set_names_what_is_missing(tmp_path, fake_manifest):
    m = Manifest.read(fake_manifest(tmp_path))
    with pytest.raises(BadInput, match="invoke package --formats deb"):
        install.deb_set(m)


def test_with_panic_a_capture_panic_keeps_the_deadline():
    w = Watch(300, None)
    feed(w, FIRST)
    assert w(ConsoleLine(20.0, "[    0.53] Kernel panic - not syncing: System is deadlocked on memory")) is None
    assert w.capture_panic
