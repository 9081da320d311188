"""The one place packaging/ templates are rendered, with one escaping rule per output format.

Every template has a format (FORMAT_OF; a template without one is refused), and every
`{{ value }}` it prints passes that format's rule, applied by jinja2's `finalize`, so a new
field or template cannot forget it:

- rpm-spec: `%` doubled (rpmbuild expands `%(...)`, `%{lua:...}` anywhere in a spec), and
  no control character (a newline would start a new tag or section). Text that is already spec
  text (the scriptlets) is marked with `spec_text`, which doubles `%` itself.
- shell (scripts, sourced files): a value must be a plain word that no shell context changes,
  or be quoted for the shell by the `sh` filter (one single-quoted word).
- kdump-conf: words of plain characters (kdumpctl strips `#...` as a comment and word-splits).
- grub, bls: words of plain characters; in a BLS entry also the word `$kernelopts`.
- deb-control, text: no control character (a newline would add a control field or line).

A value that breaks its format's rule is exit 2 naming the template and the value (repr).
Boundary validation (kdumpcfg, bootcfg, payload) refuses bad settings earlier, with the
setting's own grammar; this layer is what holds if a value ever slips past it.
"""
from __future__ import annotations

import fnmatch
import functools
import re
import shlex
import textwrap

import jinja2

from kbuild.core.errors import BadInput
from kbuild.core.paths import PACKAGING

# First match wins; every file under packaging/ must match one (tests/unit/test_render_rules.py).
FORMAT_OF = (
    ("meta.j2", "text"),                    # imported for its variables; prints nothing
    ("rpm/kernel.spec.j2", "rpm-spec"),
    ("rpm/config-README.j2", "text"),
    ("rpm/rpmlintrc.j2", "text"),
    ("rpm/*.j2", "shell"),                  # scriptlets and the kdump-conf helper
    ("deb/*.control.j2", "deb-control"),
    ("deb/changelog.j2", "deb-control"),
    ("deb/copyright.j2", "text"),
    ("deb/*.lintian-overrides.j2", "text"),
    ("deb/*.j2", "shell"),                  # maintainer scripts and the hooks they include
    ("kdump/kdump-tools.j2", "shell"),
    ("kdump/kdump.conf.j2", "kdump-conf"),
    ("boot/grub-dropin.cfg.j2", "shell"),
    ("boot/bls.conf.j2", "bls"),
    ("boot/grub.conf.j2", "grub"),
    ("boot/menuentry.cfg.j2", "grub"),
    ("installtest/*.service.j2", "text"),   # the install test's own guest files, never shipped
    ("installtest/*.j2", "shell"),
)
# Characters that mean nothing to sh in any context (bare, "..." or an assignment): no quotes,
# `$`, backslash, globs, `~`, braces, `#`, whitespace, operators.
SHELL_PLAIN = re.compile(r"[A-Za-z0-9._,:/+=@%-]*")
# One word of kdump.conf, a GRUB script or a BLS line: the same set plus ( ) (device names,
# titles); `%` and `=` are inert there too.
WORD = re.compile(r"[A-Za-z0-9._,:/+=@%()-]+")
KERNELOPTS = "$kernelopts"


class Escaped(str):
    """Text already in one output format (made by that format's filter): passed as it is."""

    fmt = ""


class SpecText(Escaped):
    fmt = "rpm-spec"


class ShellWord(Escaped):
    fmt = "shell"


def _no_control(fmt: str, value: str) -> str:
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        raise BadInput(f"{fmt}: value {value!r} has control character {bad!r}")
    return value


def spec_text(text: str) -> SpecText:
    """Spec text made by us (a scriptlet body): `%` doubled so rpmbuild expands no macro in it."""
    if "\0" in text:
        raise BadInput(f"rpm-spec: text {text[:60]!r}... has a NUL byte")
    return SpecText(text.replace("%", "%%"))


def sh(value) -> ShellWord:
    """One shell word that reads back as `value` when the shell parses it (single quotes)."""
    return ShellWord(shlex.quote(_no_control("shell", str(value))))


def _words(fmt: str, value: str, variables: tuple[str, ...] = ()) -> str:
    _no_control(fmt, value)
    words = value.split(" ")
    bad = next((w for w in words if w not in variables and not WORD.fullmatch(w)), None)
    if value and bad is not None:
        raise BadInput(f"{fmt}: value {value!r}: word {bad!r} would not be read back literally")
    return value


def _rule_rpm_spec(value: str) -> str:
    return _no_control("rpm-spec", value).replace("%", "%%")


def _rule_shell(value: str) -> str:
    if not SHELL_PLAIN.fullmatch(value):
        raise BadInput(f"shell: value {value!r} is not a plain word; quote it with the `sh` filter")
    return value


RULES = {
    "rpm-spec": _rule_rpm_spec,
    "shell": _rule_shell,
    "kdump-conf": lambda v: _words("kdump-conf", v),
    "grub": lambda v: _words("grub", v),
    "bls": lambda v: _words("bls", v, (KERNELOPTS,)),
    "deb-control": lambda v: _no_control("deb-control", v),
    "text": lambda v: _no_control("text", v),
}


def format_of(template: str) -> str:
    for pattern, fmt in FORMAT_OF:
        if fnmatch.fnmatchcase(template, pattern):
            return fmt
    raise BadInput(f"packaging/{template}: no output format in render.FORMAT_OF; add one")


def deb_description(text: str) -> str:
    """Debian's extended description: lines of at most 80 columns indented by one space,
    paragraphs separated by ` .`; a `* ` line starts an indented (verbatim) bullet."""
    paras = []
    for para in textwrap.dedent(text).strip().split("\n\n"):
        lines = []
        for item in para.replace("\n* ", "\n\0* ").split("\n\0"):
            bullet = item.startswith("* ")
            lines += textwrap.wrap(" ".join(item.split()), 78, break_long_words=False,
                                   break_on_hyphens=False, initial_indent=" " if bullet else "",
                                   subsequent_indent="   " if bullet else "")
        paras.append("\n".join(" " + ln for ln in lines))
    return "\n .\n".join(paras) + "\n"


@functools.lru_cache(maxsize=None)
def _env(fmt: str) -> jinja2.Environment:
    rule = RULES[fmt]

    def finalize(value):
        if isinstance(value, Escaped):
            if value.fmt != fmt:
                raise BadInput(f"{fmt}: value {str(value)!r} was escaped for {value.fmt}")
            return value
        return rule(str(value))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PACKAGING)), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, finalize=finalize)
    env.filters["deb_description"] = deb_description
    env.filters["sh"] = sh
    return env


def render(template: str, /, **ctx) -> str:
    """Render packaging/<template> under its format's rule; a missing variable is an error."""
    env = _env(format_of(template))
    try:
        return env.get_template(template).render(**ctx)
    except jinja2.TemplateError as e:
        raise BadInput(f"packaging/{template}: {e}") from None
    except BadInput as e:
        raise BadInput(f"packaging/{template}: {e}") from None
