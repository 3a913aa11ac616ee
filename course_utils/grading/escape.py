"""Text derived from a submission made safe for where it lands: feedback, logs, the terminal, CSV, file names.

A submission controls exception names and messages, printed output, returned strings and its file
name. None of it may carry a line break into a line the grader writes, a terminal control sequence
(screen clear, window title, clipboard write), a formula a spreadsheet runs, or a name the file
system rejects. Escapes are visible (`\\n`, `\\x1b`, `\\u202e`), so nothing is hidden from the reader.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

QUOTE = "    | "  # every line of submission text in feedback starts with this
# C0 and C1 controls, DEL, and the format characters that reorder or hide text (bidi, zero width)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_CONTROL_BUT_LINES = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)
FORMULA_PREFIXES = ("=", "+", "-", "@")
NAME_BYTES = 200  # a file name of at most this many UTF-8 bytes (+ ".txt") is valid everywhere


def _visible(match: re.Match) -> str:
    c = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c) or (
        f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
    )


def valid_utf8(text: str) -> str:
    """`text` as valid UTF-8 (undecodable bytes of a file name become U+FFFD)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def one_line(text: str) -> str:
    """`text` on one line with every control or format character escaped visibly."""
    return _CONTROL.sub(_visible, valid_utf8(text))


def log_text(text: str) -> str:
    """`text` with its lines and tabs kept and every other control or format character escaped."""
    return _CONTROL_BUT_LINES.sub(_visible, valid_utf8(text).replace("\r\n", "\n"))


def quoted(text: str) -> list[str]:
    """Submission text as feedback lines, each escaped and marked with QUOTE."""
    return [QUOTE + one_line(line) for line in log_text(text).split("\n")]


def csv_cell(text: str) -> str:
    """A one-line CSV cell that a spreadsheet will not run as a formula (leading blanks included)."""
    text = one_line(text)
    return "'" + text if text.lstrip().startswith(FORMULA_PREFIXES) else text


def file_stem(text: str) -> str:
    """A file name stem for `text`: itself when safe, else a readable prefix and a hash of it."""
    safe = one_line(text).replace("/", "\\x2f")
    raw = safe.encode()
    if safe == text and 0 < len(raw) <= NAME_BYTES and safe not in (".", ".."):
        return safe
    tag = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    head = unicodedata.normalize("NFC", raw[: NAME_BYTES - 20].decode("utf-8", "ignore"))
    return f"{head}~{tag}".lstrip(".")
