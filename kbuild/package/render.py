"""The one jinja2 environment for packaging/ templates: a missing variable is an error."""
from __future__ import annotations

import textwrap

import jinja2

from kbuild.core.errors import BadInput
from kbuild.core.paths import PACKAGING

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PACKAGING)), autoescape=False,
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                          trim_blocks=True, lstrip_blocks=True)


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


_ENV.filters["deb_description"] = deb_description


def render(template: str, /, **ctx) -> str:
    """Render packaging/<template>; a missing variable is an error, never an empty string."""
    try:
        return _ENV.get_template(template).render(**ctx)
    except jinja2.TemplateError as e:
        raise BadInput(f"packaging/{template}: {e}") from None


