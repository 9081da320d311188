"""One escaping rule per output format, applied by the renderer to every printed value."""
import pytest

from kbuild.core.errors import BadInput
from kbuild.core.paths import PACKAGING
from kbuild.package import render as R


def test_every_template_has_an_output_format():
    names = sorted(str(p.relative_to(PACKAGING)) for p in PACKAGING.rglob("*.j2"))
    assert len(names) > 20
    assert {n: R.format_of(n) for n in names}["rpm/kernel.spec.j2"] == "rpm-spec"
    with pytest.raises(BadInput, match="no output format"):
        R.format_of("new/unknown.j2")


def rule(fmt: str, text: str, **values) -> str:
    """Render `text` as a template of format `fmt`, through the same finalize as real templates."""
    return R._env(fmt).from_string(text).render(**values)


@pytest.mark.parametrize("fmt", sorted(R.RULES))
@pytest.mark.parametrize("bad", ["a\0b", "a\nb", "a\rb", "a\x7fb", "a\u2028b"])
def test_control_characters_are_refused_in_every_format(fmt, bad):
    with pytest.raises(BadInput, match="control character|not a plain word|would not be read back"):
        rule(fmt, "x {{ v }}", v=bad)


def test_rpm_spec_doubles_percent_and_takes_escaped_spec_text():
    assert rule("rpm-spec", "Release: {{ v }}", v="1%(id)%{lua:x}") == "Release: 1%%(id)%%{lua:x}"
    assert rule("rpm-spec", "{{ s }}", s=R.spec_text("echo 100%\nexit 0")) == "echo 100%%\nexit 0"
    with pytest.raises(BadInput, match="escaped for shell"):
        rule("rpm-spec", "{{ s }}", s=R.sh("x y"))


def test_shell_takes_plain_words_or_quoted_ones():
    assert rule("shell", "rel={{ v }}", v="6.1.192-3.kdump") == "rel=6.1.192-3.kdump"
    for bad in ("$(touch x)", "`id`", "a b", "a;b", "~root", "a*", "{a,b}", "'", '"', "\\", "#"):
        with pytest.raises(BadInput, match="not a plain word"):
            rule("shell", "x={{ v }}", v=bad)
    assert rule("shell", "t={{ v | sh }}", v="Linux $(id) 'x'") == "t='Linux $(id) '\"'\"'x'\"'\"''"


def test_word_formats_refuse_comments_quotes_and_variables():
    assert rule("kdump-conf", "path {{ v }}", v="/var/crash") == "path /var/crash"
    assert rule("bls", "options {{ v }}", v="$kernelopts quiet") == "options $kernelopts quiet"
    for fmt, bad in (("kdump-conf", "/var/crash#x"), ("kdump-conf", "a*"), ("bls", "$kernelopts; evil"),
                     ("bls", "${x}"), ("grub", "$kernelopts"), ("grub", "it's")):
        with pytest.raises(BadInput, match="would not be read back"):
            rule(fmt, "k {{ v }}", v=bad)


def test_render_names_the_template_and_refuses_missing_variables():
    with pytest.raises(BadInput, match=r"packaging/kdump/kdump.conf.j2: kdump-conf: value '/x#y'"):
        R.render("kdump/kdump.conf.j2", package="p", target="modern", key="failure_action",
                 values={"path": "/x#y", "core_collector": "makedumpfile", "failure_action": "reboot"})
    with pytest.raises(BadInput, match="undefined"):
        R.render("boot/bls.conf.j2")
