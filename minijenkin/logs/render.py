"""Displaying stored log lines: escaped HTML for the dashboard, safe text for terminals.

Lines are stored exactly as the step printed them, ANSI escape sequences
included. Only SGR sequences (colours and text styles, `ESC [ ... m`) are
meant for display. Every other escape sequence and control character is
removed before display, because a hostile step could otherwise set a
terminal's title, move its cursor or, in some terminals, write files.
"""

from __future__ import annotations

import re

from ansi2html import Ansi2HTMLConverter

# SGR parameters are digits separated by ';' (or ':' in ITU T.416 colours).
_SGR = r"\x1b\[[0-9;:]*m"
# mj_logs_search_text() in sql/functions/45_log_search.sql repeats this pattern.
ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"          # CSI: cursor moves, erase, SGR ...
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]"                 # other two- and three-byte sequences
    r"|\x1b"                            # a lone ESC
)
# C0 controls except TAB and ESC (every ESC left is part of a kept SGR
# sequence), DEL, and the C1 controls (U+0080 to U+009F), which some
# terminals read as escape sequences too.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f-\x9f]")
_SGR_ONLY = re.compile(_SGR)


def _strip_escapes(text: str, *, keep_sgr: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        sequence = match.group(0)
        return sequence if keep_sgr and _SGR_ONLY.fullmatch(sequence) else ""

    if "\x1b" in text:
        text = ESCAPE_SEQUENCE.sub(replace, text)
    return _CONTROL.sub("", text)


def for_terminal(text: str, *, color: bool) -> str:
    """Return `text` safe to print: SGR colours kept when `color`, other controls removed."""
    return _strip_escapes(text, keep_sgr=color)


def plain_text(text: str) -> str:
    """Return `text` without any escape sequence or control character."""
    return _strip_escapes(text, keep_sgr=False)


class HtmlRenderer:
    """Renders log lines to HTML fragments with inline colour styles.

    The output is HTML-escaped (`<script>` becomes `&lt;script&gt;`), so it
    can be inserted into a page as markup. Colour state does not carry over
    from one line to the next: each line is rendered on its own, which is
    what a viewer that shows any window of a long log needs.
    """

    def __init__(self) -> None:
        self._converter = Ansi2HTMLConverter(inline=True, escaped=True, linkify=False)

    def line_to_html(self, text: str) -> str:
        cleaned = _strip_escapes(text, keep_sgr=True)
        if "\x1b" not in cleaned:
            # No colours: plain escaping is all ansi2html would do.
            return _escape_html(cleaned)
        return self._converter.convert(cleaned, full=False, ensure_trailing_newline=False)


_HTML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def _escape_html(text: str) -> str:
    return text.translate(_HTML_ESCAPES)
