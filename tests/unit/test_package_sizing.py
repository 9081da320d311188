"""Which crashkernel= the packages carry: the settings' value, else the build's measurements."""
import json
from dataclasses import replace

from kbuild.core.manifest import Manifest
from kbuild.package import bootcfg, kdumpcfg, sizing

DEFAULTS = kdumpcfg.load()


def with_records(path, **records):
    data = json.loads(path.read_text())
    data.update(records)
    path.write_text(json.dumps(data))
    return Manifest.read(path)


def test_shipped_settings_leave_the_reservation_to_the_measurement():
    assert DEFAULTS.crashkernel is None


def test_no_measurement_gives_the_default_and_says_so(tmp_path, fake_manifest):
    m = Manifest.read(fake_manifest(tmp_path))
    k, line, floor = sizing.choose(DEFAULTS, m)
    assert k.crashkernel == kdumpcfg.DEFAULT_CRASHKERNEL and "the default (no measurement" in line and floor is None


def test_the_largest_recommendation_wins_and_the_largest_minimum_is_the_floor(tmp_path, fake_manifest):
    m = with_records(fake_manifest(tmp_path), crashkernel={"minimum": "32M", "recommended": "48M"},
                     install_test_crashkernel={"minimum": "56M", "recommended": "96M"})
    k, line, floor = sizing.choose(DEFAULTS, m)
    assert k.crashkernel == "96M" and "largest measured recommendation (install-test" in line
    assert floor[0] == 56 << 20 and "install-test" in floor[1]


def test_an_explicit_value_wins_but_is_warned_below_the_measured_minimum(tmp_path, fake_manifest):
    m = with_records(fake_manifest(tmp_path), install_test_crashkernel={"minimum": "56M", "recommended": "96M"})
    k, line, floor = sizing.choose(replace(DEFAULTS, crashkernel="48M"), m)
    assert k.crashkernel == "48M" and line == "crashkernel=48M from the kdump settings"
    warnings = kdumpcfg.lint(k, floor=floor).warnings
    assert any("48M is below 56M, the smallest reservation that still gave a dump in this build's "
               "install-test" in w for w in warnings), warnings
    # without a measurement the fixed floor from facts.md applies
    assert any("below 96M" in w for w in bootcfg.crashkernel_warnings(bootcfg.parse_crashkernel("48M")))
