"""Splitting a step's raw output into storable log lines.

Output is arbitrary bytes. Lines end at LF; a CR LF ending loses its CR, and
text overwritten with bare CRs (progress bars) keeps only its last state.
Invalid UTF-8 becomes U+FFFD and NUL becomes U+2400 ("␀"), because
PostgreSQL text cannot hold NUL and a viewer should see that something was
there. A line longer than MAX_LINE_BYTES is cut into pieces; every piece but
the last ends with SPLIT_MARKER. Secrets are masked in each stored line, so
a splitter given the job's masker masks a long line before cutting it,
because a secret cut in two would match in neither piece.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minijenkin.logs.masking import SecretMasker

MAX_LINE_BYTES = 64 * 1024
SPLIT_MARKER = " \u21b5[line continues]"
NUL_REPLACEMENT = "\u2400"


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    if "\x00" in text:
        text = text.replace("\x00", NUL_REPLACEMENT)
    return text


def _last_state(raw: bytes) -> bytes:
    """Drop a trailing CR, then keep what follows the last remaining CR."""
    if raw.endswith(b"\r"):
        raw = raw.rstrip(b"\r")
    cut = raw.rfind(b"\r")
    return raw if cut < 0 else raw[cut + 1:]


def _utf8_boundary(raw: bytes, limit: int) -> int:
    """The largest cut position <= limit that does not split a UTF-8 sequence."""
    cut = limit
    # Continuation bytes are 0b10xxxxxx; step back over at most three of them.
    while cut > limit - 4 and cut > 0 and (raw[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 else limit


class LineSplitter:
    """Incremental splitter: feed chunks, get complete lines; `finish` flushes the rest."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES,
                 masker: SecretMasker | None = None) -> None:
        self.max_line_bytes = max_line_bytes
        self._masker = masker if masker else None
        # Bytes kept after a cut in a line that has no LF yet, so that a
        # secret starting before the cut is complete when it is masked.
        self._overlap = masker.max_fragment_bytes - 1 if self._masker else 0
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self._pending + chunk if self._pending else chunk
        parts = data.split(b"\n")
        self._pending = parts.pop()
        lines = [line for part in parts for line in self._emit(part)]
        if len(self._pending) > self.max_line_bytes + self._overlap:
            lines.extend(self._emit_overlong())
        return lines

    def finish(self) -> list[str]:
        if not self._pending:
            return []
        rest, self._pending = self._pending, b""
        return self._emit(rest)

    def _emit(self, raw: bytes) -> list[str]:
        if b"\r" in raw:
            raw = _last_state(raw)
        if len(raw) > self.max_line_bytes and self._masker is not None:
            raw = self._masker.mask_bytes(raw)
        if len(raw) <= self.max_line_bytes:
            return [_decode(raw)]
        lines: list[str] = []
        while len(raw) > self.max_line_bytes:
            cut = _utf8_boundary(raw, self.max_line_bytes)
            lines.append(_decode(raw[:cut]) + SPLIT_MARKER)
            raw = raw[cut:]
        lines.append(_decode(raw))
        return lines

    def _emit_overlong(self) -> list[str]:
        """Cut full-size pieces off a line that has no LF yet, to bound memory.

        At least `_overlap` bytes stay pending after the last cut. A secret
        that starts before a cut therefore lies wholly in the pending bytes,
        which are masked first, and one that starts in the kept bytes is
        masked once the rest of it arrives.
        """
        if self._masker is not None:
            self._pending = self._masker.mask_bytes(self._pending)
        lines: list[str] = []
        while len(self._pending) > self.max_line_bytes + self._overlap:
            if b"\r" in self._pending:
                # A progress bar: its earlier states are overwritten anyway.
                cut_at = self._pending.rfind(b"\r")
                if cut_at > 0:
                    self._pending = self._pending[cut_at:]
                    if len(self._pending) <= self.max_line_bytes + self._overlap:
                        break
            cut = _utf8_boundary(self._pending, self.max_line_bytes)
            piece, self._pending = self._pending[:cut], self._pending[cut:]
            lines.append(_decode(piece.lstrip(b"\r")) + SPLIT_MARKER)
        return lines
