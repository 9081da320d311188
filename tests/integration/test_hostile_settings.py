"""Hostile settings never run code (issue 10): every value is refused with exit 2, or comes
back as the same literal value from every output, read by the consumer's own parser:
`sh` sourcing the kdump-tools file (and splitting MAKEDUMP_ARGS as kdump-config does),
kdumpctl's reader on kdump.conf, `rpmspec -P` on the spec, `sh -n`/sourcing/shellcheck/
grub-script-check on the boot entries. A canary (`touch $MARKER` in many spellings) must never
run. The corpus and property tests need no kernel; the `invoke package` tests package the
existing build (KBUILD_DIST_DIR or dist/) and skip, with the reason, when there is none.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hostile import (DEFAULT_BOOT, DEFAULT_KDUMP, assert_refused, boot_toml, check_boot_outputs,
                     check_kdump_outputs, check_spec, kdump_toml, run_sh)
from kbuild.core.errors import BadInput
from kbuild.core.manifest import Manifest
from kbuild.package import bootcfg, kdumpcfg
from kbuild.package.payload import Payload
from kbuild.package.render import sh

REPO = Path(__file__).resolve().parent.parent.parent
M = "@M@"   # replaced by the case's marker file
CANARIES = [f"$(touch {M})", f"`touch {M}`", f"%(touch {M})", f"%{{lua:os.execute('touch {M}')}}",
            f"; touch {M}", f"\ntouch {M}", f"%global x %(touch {M})%{{x}}", f"' ; touch {M} ; '",
            f"\" ; touch {M} ; \"", f"\\\"$(touch {M})", f"\rtouch {M}", f"\0touch {M}"]

# (setting, value, expected): "refuse" (exit 2) or "accept" (then every output must round-trip).
KDUMP_CORPUS = [
    ("path", "/var/crash/%(id)", "refuse"),
    ("path", f"/var/crash/%(touch {M})", "refuse"),
    ("path", f"/var/crash/%{{lua:os.execute('touch {M}')}}", "refuse"),
    ("path", "/var/../../etc", "refuse"),
    ("path", "/", "refuse"),
    ("path", "/var/crash*", "refuse"),
    ("path", "/var/crash#x", "refuse"),
    ("path", "/var/crash\0x", "refuse"),
    ("path", "/var/crash\n%global x %(touch @M@)%{x}", "refuse"),
    ("path", "/var/my crash", "refuse"),
    ("path", "var/crash", "refuse"),
    ("path", "/var/crash/", "refuse"),
    ("path", "/var/crash/kdump_1.2+x-y", "accept"),
    ("core_collector", f"makedumpfile -d 31 %(touch {M})", "refuse"),
    ("core_collector", f"makedumpfile -d 31 %{{lua:os.execute('touch {M}')}}", "refuse"),
    ("core_collector", "/tmp/evil/makedumpfile -d 31", "refuse"),
    ("core_collector", "makedumpfile -d 31 --work-dir=/var/tmp/a*b", "refuse"),
    ("core_collector", "makedumpfile -d 31 --work-dir='/var/tmp/a b'", "refuse"),
    ("core_collector", "makedumpfile -c -d 31 --message-level 1%", "refuse"),
    ("core_collector", "makedumpfile -d 31\0", "refuse"),
    ("core_collector", "makedumpfile -l -d 31 --work-dir=/var/tmp/ab --num-threads 2", "accept"),
    ("core_collector", "makedumpfile -cd31 -x /usr/lib/debug/vmlinux", "accept"),
    ("failure_action", "reboot\nshell", "refuse"),
    ("failure_action", f"reboot; touch {M}", "refuse"),
    ("failure_action", "poweroff", "accept"),
    ("cmdline_append", "{cpu_limit:>9000000000000000000}", "refuse"),
    ("cmdline_append", "irqpoll {cpu_limit} {cpu_limit.__class__}", "refuse"),
    ("cmdline_append", "irqpoll {cpu_limit} x=%(touch @M@)", "refuse"),
    ("cmdline_append", "irqpoll {cpu_limit} x=$(touch @M@)", "refuse"),
    ("cmdline_append", "irqpoll {cpu_limit} reset_devices panic=10 console=ttyS0,115200n8", "accept"),
    ("kdump_tools_append", "systemd.unit=$UNIT", "refuse"),
    ("kdump_tools_append", "systemd.unit=x'", "refuse"),
    ("kdump_tools_append", "", "accept"),
    ("crashkernel", "1E", "refuse"),
    ("crashkernel", "128G", "refuse"),
    ("crashkernel", f"256M%(touch {M})", "refuse"),
    ("crashkernel", "256M ro", "refuse"),
    ("crashkernel", "1G-4G:192M,4G-:512M", "accept"),
    ("kdump_conf_target", "modern\n", "refuse"),
    ("kdump_conf_target", "rhel6", "accept"),
] + [(key, f"{good}{canary}", "refuse") for key, good in
     (("path", "/var/crash"), ("core_collector", "makedumpfile -d 31 "), ("cmdline_append", "irqpoll {cpu_limit} "),
      ("kdump_tools_append", "x="), ("crashkernel", "256M"), ("failure_action", "reboot"))
     for canary in CANARIES]

BOOT_CORPUS = [
    ("title", "Linux {release}; touch @M@", "refuse"),
    ("title", "Linux's {release}", "refuse"),
    ("title", "Linux {cpu_limit:>9000000000000000000}", "refuse"),
    ("title", "Linux {release.__class__}", "refuse"),
    ("title", "Linux\r{release}", "refuse"),
    ("title", "Linux $(touch @M@)", "refuse"),
    ("title", "Linux %(touch @M@) {release}", "refuse"),
    ("title", "Linux {release} (kdump, 2.x_y+z/a@b:c)", "accept"),
    ("legacy__root", "(hd0,0)\nroot (hd9,9)", "refuse"),
    ("legacy__root", "(hd0,0); touch @M@", "refuse"),
    ("legacy__root", "/dev/sda1", "refuse"),
    ("legacy__root", "(hd1,2,a)", "accept"),
    ("legacy__options", "ro $(touch @M@)", "refuse"),
    ("legacy__options", "ro\ntitle evil", "refuse"),
    ("legacy__options", "ro root=UUID=0f3c-1 rd.lvm.lv=vg/root quiet", "accept"),
    ("bls__options", "$kernelopts; insmod evil; echo injected", "refuse"),
    ("bls__options", "$kernelopts ${evil}", "refuse"),
    ("bls__options", "$kernelopts `touch @M@`", "refuse"),
    ("bls__options", "$kernelopts\nlinux /evil", "refuse"),
    ("bls__options", "$kernelopts crashkernel=1G", "refuse"),
    ("bls__options", "$kernelopts quiet console=ttyS0,115200n8", "accept"),
    ("grub_dropin__name", "../../etc/x.cfg", "refuse"),
    ("grub_dropin__name", "zz;touch @M@.cfg", "refuse"),
    ("grub_dropin__name", "zz-kdump-2.cfg", "accept"),
] + [(key, good.replace("{}", canary), "refuse") for key, good in
     (("title", "Linux {release} {}"), ("legacy__root", "(hd0,0){}"), ("legacy__options", "ro {}"),
      ("bls__options", "$kernelopts {}"), ("grub_dropin__name", "zz{}.cfg"))
     for canary in CANARIES]

# Manifest fields (the manifest is input): each must be refused when `package` reads it.
MANIFEST_CORPUS = [
    (("release", "rpm_version", "release"), "kdump\n%global x %(touch @M@)%{x}"),
    (("release", "rpm_version", "release"), "kdump%(touch @M@)"),
    (("release", "rpm_version", "version"), "6.1.192%{lua:os.execute('touch @M@')}"),
    (("release", "rpm_version", "release"), "kdump2"),
    (("release", "deb_version"), "6.1.192-kdump\nDepends: evil"),
    (("release", "deb_version"), "6.1.192-kdump2"),
    (("release", "release"), "6.1.192-$(touch @M@)"),
    (("release", "release"), "6.1.192-kdump%(touch @M@)"),
    (("release", "cpu_limit_arg"), "nr_cpus=1 %(touch @M@)"),
    (("build", "build_id"), "ab%(touch @M@)"),
    (("build", "env", "SOURCE_DATE_EPOCH"), "-5"),
]


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "canary-ran"


def with_marker(value: str, marker: Path) -> str:
    return value.replace(M, str(marker))


@pytest.fixture
def payload(tmp_path, fake_manifest) -> Payload:
    return Payload.from_manifest(Manifest.read(fake_manifest(tmp_path / "build")))


@pytest.mark.parametrize("key, value, expected", KDUMP_CORPUS, ids=lambda v: repr(v)[:40])
def test_kdump_corpus(key, value, expected, tmp_path, marker, payload):
    value = with_marker(value, marker)
    try:
        k = kdumpcfg.load(kdump_toml(tmp_path / "kdump.toml", **{key: value}))
        kdumpcfg.check(k, payload.cpu_limit_arg, {"rpm"} if key == "kdump_conf_target" else {"deb", "rpm"})
    except BadInput as e:
        assert_refused(e)
        assert expected == "refuse", f"refused: {e}"
        assert key in str(e) or "crashkernel=" in str(e), str(e)
    else:
        assert expected == "accept", f"accepted {value!r}"
        assert getattr(k, key) == value
        check_kdump_outputs(k, payload, bootcfg.BootEntries.for_release(payload.release, k.crashkernel),
                            tmp_path / "out")
        check_boot_outputs(bootcfg.BootEntries.for_release(payload.release, k.crashkernel), tmp_path / "boot")
    assert not marker.exists(), "the canary ran"


@pytest.mark.parametrize("key, value, expected", BOOT_CORPUS, ids=lambda v: repr(v)[:40])
def test_boot_corpus(key, value, expected, tmp_path, marker, payload):
    value = with_marker(value, marker)
    try:
        e = bootcfg.BootEntries.for_release(payload.release, "256M", boot_toml(tmp_path / "boot.toml", **{key: value}))
    except BadInput as err:
        assert_refused(err)
        assert expected == "refuse", f"refused: {err}"
        assert "boot.toml: " in str(err) and key.split("__")[-1] in str(err), str(err)
    else:
        assert expected == "accept", f"accepted {value!r}"
        check_boot_outputs(e, tmp_path / "boot")
        check_spec(payload, kdumpcfg.load(), e, tmp_path / "spec")
    assert not marker.exists(), "the canary ran"


@pytest.mark.parametrize("text", ['"path\\r\\n" = "/var/crash"\n', '[legacy]\n"root\\u0000" = "(hd0,0)"\n'])
def test_hostile_key_names_give_one_line(text, tmp_path):
    for loader, base in ((kdumpcfg.load, kdump_toml(tmp_path / "k.toml")),
                         (bootcfg.load, boot_toml(tmp_path / "b.toml"))):
        base.write_text(base.read_text() + text)
        with pytest.raises(BadInput) as e:
            loader(base)
        assert_refused(e.value)
        assert "unknown key" in str(e.value) or "not valid TOML" in str(e.value), str(e.value)


@pytest.mark.parametrize("where, value", MANIFEST_CORPUS, ids=lambda v: repr(v)[:40])
def test_manifest_corpus(where, value, tmp_path, marker, fake_manifest):
    path = fake_manifest(tmp_path / "build")
    data = json.loads(path.read_text())
    node = data
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = with_marker(value, marker)
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput) as e:
        Payload.from_manifest(Manifest.read(path))
    assert_refused(e.value)
    assert not marker.exists()


def test_the_renderer_holds_when_validation_is_bypassed(tmp_path, marker, payload):
    """Values forced past the model's checks: the spec rule still doubles `%` (rpmspec -P prints
    them literally, runs nothing), and the shell rule refuses an unquoted non-plain word."""
    from dataclasses import replace
    evil = f"%(touch {marker})%{{lua:os.execute('touch {marker}')}}"
    e = bootcfg.BootEntries.for_release(payload.release, "256M")
    object.__setattr__(e, "title", f"Linux {evil} $(touch {marker})")
    forced = replace(payload, release=f"6.1.192-{evil}")
    with pytest.raises(BadInput, match=r"shell: value .* is not a plain word"):
        check_spec(forced, kdumpcfg.load(), e, tmp_path / "a")     # rel={{ release }} in a scriptlet
    forced = replace(payload, build_id=f"ab {evil}")                # description and changelog text
    out = check_spec(forced, kdumpcfg.load(), e, tmp_path / "b")
    assert f"(GNU build-id ab {evil})" in out
    assert f"--title={sh(e.title)}" in out          # the quoted word, %-free again after expansion
    assert run_sh(f"printf '%s\\0' {sh(e.title)}") == [e.title]
    with pytest.raises(BadInput, match=r"rpm-spec: value 'kdump\\n%global"):
        check_spec(replace(payload, rpm_release="kdump\n%global x 1"), kdumpcfg.load(), e, tmp_path / "c")
    assert not marker.exists()


# --- property: arbitrary text in every string setting -------------------------------------

FRAGMENTS = ["/var", "/crash", "makedumpfile", " ", "-d", " 31", "-c", "--work-dir=", "=", "{cpu_limit}",
             "{release}", "$kernelopts", "(hd0,0)", "irqpoll", "x", "1", "256M", "G", "@", ",", ":",
             "%", "%(", ")", "{", "}", "$", "`", "'", '"', ";", "#", "*", "?", "[", "~", "\\", "\n",
             "\r", "\t", "\0", "\x7f", "\u2028", "é", *CANARIES]
SAFE = ["x", "1", "/a", ".", "_", "-", "+", ",", ":", "=", "@", " y", "(", ")", "/", "0x1", "K"]
BASES = {**{k: [v] for k, v in DEFAULT_KDUMP.items()}, **{k.replace(".", "__"): [v] for k, v in DEFAULT_BOOT.items()}}
for _key, _value, _expected in KDUMP_CORPUS + BOOT_CORPUS:
    if _expected == "accept":
        BASES[_key].append(_value)


def _insert(base: str, edits: list[tuple[int, str]]) -> str:
    for pos, text in edits:
        pos %= len(base) + 1
        base = base[:pos] + text + base[pos:]
    return base


def values(key: str):
    """Arbitrary text, and valid values of `key` with safe or hostile pieces inserted anywhere."""
    near = st.builds(_insert, st.sampled_from(BASES[key]),
                     st.lists(st.tuples(st.integers(0, 200), st.sampled_from(SAFE + FRAGMENTS)), max_size=2))
    safe = st.builds(_insert, st.sampled_from(BASES[key]),
                     st.lists(st.tuples(st.integers(0, 200), st.sampled_from(SAFE)), max_size=3))
    return st.one_of(st.text(max_size=30), st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join),
                     near, safe)




@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), key=st.sampled_from(sorted(DEFAULT_KDUMP)))
def test_any_text_in_any_kdump_setting(data, key, tmp_path_factory, payload):
    value = data.draw(values(key), label="value")
    work = tmp_path_factory.mktemp("prop")
    marker = work / "canary-ran"
    value = with_marker(value, marker)
    try:
        k = kdumpcfg.load(kdump_toml(work / "kdump.toml", **{key: value}))
        kdumpcfg.check(k, payload.cpu_limit_arg, {"rpm"})
        e = bootcfg.BootEntries.for_release(payload.release, k.crashkernel)
    except BadInput as err:
        assert_refused(err)
        event("refused")
    else:
        event(f"accepted {key}")
        assert getattr(k, key) == value
        if k.failure_action in kdumpcfg.KDUMP_TOOLS_FAIL_CMD:
            check_kdump_outputs(k, payload, e, work / "out")
        else:
            check_spec(payload, k, e, work / "out")
    assert not marker.exists()
    shutil.rmtree(work)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), key=st.sampled_from(sorted(k.replace(".", "__") for k in DEFAULT_BOOT)))
def test_any_text_in_any_boot_setting(data, key, tmp_path_factory, payload):
    value = data.draw(values(key), label="value")
    work = tmp_path_factory.mktemp("prop")
    marker = work / "canary-ran"
    value = with_marker(value, marker)
    try:
        e = bootcfg.BootEntries.for_release(payload.release, "256M", boot_toml(work / "boot.toml", **{key: value}))
    except BadInput as err:
        assert_refused(err)
        event("refused")
    else:
        event(f"accepted {key}")
        check_boot_outputs(e, work / "boot")
        check_spec(payload, kdumpcfg.load(), e, work / "spec")
    assert not marker.exists()
    shutil.rmtree(work)


# --- `invoke package` on the existing build: real rpmbuild ---------------------------------

@pytest.fixture(scope="module")
def built_manifest(request) -> Path:
    """The newest built kernel's manifest (KBUILD_DIST_DIR, else dist/), packaged without a
    rebuild, if its artifacts are still the ones it records (a later build of the same folder,
    under another release, replaces them); else the session's default build."""
    try:
        found = Manifest.find()
        if found.intact():
            return found.path
    except BadInput:
        pass
    try:
        return request.getfixturevalue("default_build").path
    except pytest.FixtureLookupError:
        pytest.skip("no built kernel: run invoke build-kernel")


def fresh_dist(manifest: Path, where: Path) -> Path:
    """A new dist/<release>/ holding only the manifest; artifacts stay where it points."""
    out = where / "dist" / manifest.parent.name / "manifest.json"
    out.parent.mkdir(parents=True)
    shutil.copyfile(manifest, out)
    return out


def invoke_package(dist: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", "package", *args], cwd=REPO,
                          capture_output=True, text=True,
                          env={**os.environ, "KBUILD_DIST_DIR": str(dist)})


@pytest.mark.parametrize("key, value", [
    ("path", "/var/crash/%{lua:os.execute('touch @M@')}"),
    ("path", "/var/crash/%(touch @M@)"),
    ("core_collector", "makedumpfile -d 31 %{lua:os.execute('touch @M@')}"),
    ("core_collector", "/tmp/evil/makedumpfile -d 31"),
    ("crashkernel", "1E"),
    ("cmdline_append", "{cpu_limit:>9000000000000000000}"),
])
def test_invoke_package_refuses_injection_before_rpmbuild(key, value, built_manifest, tmp_path, marker):
    manifest = fresh_dist(built_manifest, tmp_path)
    conf = kdump_toml(tmp_path / "team-kdump.toml", **{key: with_marker(value, marker)})
    res = invoke_package(tmp_path / "dist", "--formats", "rpm", "--kdump-config", str(conf))
    assert res.returncode == 2, res.stdout + res.stderr
    line = res.stderr.strip()
    assert line.startswith(f"error: {conf}: {key}") and "\n" not in line and "Traceback" not in res.stderr, line
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["manifest.json"]
    assert not marker.exists()


def test_invoke_package_refuses_an_edited_manifest(built_manifest, tmp_path, marker):
    manifest = fresh_dist(built_manifest, tmp_path)
    data = json.loads(manifest.read_text())
    data["release"]["rpm_version"]["release"] = f"kdump\n%global x %(touch {marker})%{{x}}"
    manifest.write_text(json.dumps(data))
    res = invoke_package(tmp_path / "dist", "--formats", "rpm")
    assert res.returncode == 2 and "rpm_version" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["manifest.json"]
    assert not marker.exists()


def test_invoke_package_ships_unusual_but_legal_settings_literally(built_manifest, tmp_path, marker):
    """Real rpmbuild and dpkg-deb with --kdump-config: both families carry the same words."""
    manifest = fresh_dist(built_manifest, tmp_path)
    values = {"path": "/var/crash/kdump_1.2+x-y",
              "core_collector": "makedumpfile -l -d 31 --work-dir=/var/tmp/kd-1 --num-threads 2",
              "cmdline_append": "irqpoll {cpu_limit} reset_devices panic=10"}
    conf = kdump_toml(tmp_path / "team-kdump.toml", **values)
    res = invoke_package(tmp_path / "dist", "--formats", "deb,rpm", "--kdump-config", str(conf))
    assert res.returncode == 0, res.stdout + res.stderr
    out = manifest.parent
    root = tmp_path / "root"
    root.mkdir()
    rpm_file = next(out.glob("kdump-pipeline-config-*.noarch.rpm"))
    subprocess.run(f"rpm2cpio {rpm_file} | cpio -idm --quiet", shell=True, cwd=root, check=True)
    deb_file = next(out.glob("kdump-pipeline-config_*_all.deb"))
    subprocess.run(["dpkg", "-x", str(deb_file), str(root)], check=True)
    from hostile import KDUMP_CONFIG_READ, KDUMPCTL_READ
    conf_pairs = run_sh(KDUMPCTL_READ, str(root / "usr/share/kdump-pipeline/kdump.conf"))
    assert conf_pairs[:4] == ["path", values["path"], "core_collector", values["core_collector"]]
    tools = run_sh(KDUMP_CONFIG_READ, str(root / "usr/share/kdump-tools/kdump-tools.conf"), cwd=root)
    assert tools[0] == values["path"] and tools[3:] == values["core_collector"].split(" ")[1:]
    assert "irqpoll nr_cpus=1 reset_devices panic=10 " in tools[2]
    assert not marker.exists()


def test_real_rpmbuild_keeps_forced_macro_text_literal(built_manifest, tmp_path, marker):
    """Past the boundary (a title forced into the entries), real rpmbuild still runs nothing: the
    scriptlet carries the macro text literally, as the shell word it was quoted into."""
    from kbuild.package import rpm
    p = Payload.from_manifest(Manifest.read(fresh_dist(built_manifest, tmp_path)))
    e = bootcfg.BootEntries.for_release(p.release, "256M")
    evil = f"Linux %(touch {marker})"      # passes the BLS and GRUB word rules, not the boundary
    object.__setattr__(e, "title", evil)
    rpms = rpm.build(p, kdumpcfg.load(), e, tmp_path / "rpm")
    kernel = next(r for r in rpms if r.name.startswith("kernel-kdump-pipeline-6"))
    scripts = subprocess.run(["rpm", "-qp", "--scripts", str(kernel)], capture_output=True, text=True,
                             check=True).stdout
    assert f"--title={sh(evil)}" in scripts
    assert not marker.exists()
