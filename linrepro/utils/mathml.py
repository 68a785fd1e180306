"""LaTeX in markdown as MathML, so reports need no MathJax (and no network) to show math."""

from __future__ import annotations

import re

_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)", re.S)


def _mathml(tex: str, display: str) -> str:
    from latex2mathml.converter import convert

    try:
        return convert(tex.strip(), display=display)
    except Exception:  # leave unparsable TeX visible rather than lose it
        return f"<code>{tex}</code>"


def latex_to_mathml(markdown: str) -> str:
    """Replace $$…$$ and $…$ in markdown with MathML."""
    out = _DISPLAY.sub(lambda m: "\n" + _mathml(m.group(1), "block") + "\n", markdown)
    return _INLINE.sub(lambda m: _mathml(m.group(1), "inline"), out)
