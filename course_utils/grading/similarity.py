"""Suspiciously similar submissions, for a human to look at: never a penalty by itself.

Each submission's code cells are reduced to token 5-grams after stripping comments, docstrings,
string contents and names (every identifier becomes `N`, keywords and operators stay), and the
n-grams of the blank exercise (the scaffolding every student starts from) are removed. Two
submissions are listed when the Jaccard index of their n-grams is at least `threshold`; one is
listed against the master when at least `threshold` of its n-grams also occur in the master's code
(the masters are public). OUT/similarity.csv holds both lists, most similar first.
"""

from __future__ import annotations

import csv
import io
import keyword
import token
import tokenize
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from course_utils.grading.escape import csv_cell

N = 5
THRESHOLD = 0.8
MIN_NGRAMS = 20  # fewer of a submission's own n-grams than this: too little code to compare
SKIP = {token.COMMENT, token.NL, token.NEWLINE, token.INDENT, token.DEDENT, token.ENCODING, token.ENDMARKER}  # fmt: skip
STATEMENT_START = {token.NEWLINE, token.INDENT, token.DEDENT, token.ENCODING, None}


def normalised_tokens(source: str) -> list[str]:
    """The tokens of Python source with names, strings and comments made uniform."""
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    out: list[str] = []
    previous = None  # type of the last token that is not a comment or blank line
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            at_start, previous = previous in STATEMENT_START, previous if tok.type in (token.COMMENT, token.NL) else tok.type  # fmt: skip
            if tok.type in SKIP or (tok.type == token.STRING and at_start):  # docstrings go too
                continue
            if tok.type == token.NAME:
                out.append(tok.string if keyword.iskeyword(tok.string) else "N")
            elif tok.type == token.STRING or tok.type in _FSTRING:
                if out and out[-1] == "S":  # a docstring or an implicitly joined string: one S
                    continue
                out.append("S")
            else:
                out.append(tok.string)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass  # unfinished code: compare what was read
    return out


_FSTRING = {getattr(token, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(token, n)}  # fmt: skip


def ngrams(cells: list[str], n: int = N) -> set[tuple[str, ...]]:
    """The set of token n-grams of every cell."""
    grams: set[tuple[str, ...]] = set()
    for cell in cells:
        toks = normalised_tokens(cell)
        grams.update(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    return grams


@dataclass(frozen=True)
class Match:
    """Two submissions (or one and the master) whose normalised code is similar."""

    a: str
    b: str
    score: float
    shared: int


def similar(
    cells: dict[str, list[str]],
    template: list[str],
    master: list[str],
    threshold: float = THRESHOLD,
) -> list[Match]:
    """Pairs of students with Jaccard >= threshold, and students >= threshold inside the master."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    base = ngrams(template)
    own = {s: ngrams(c) - base for s, c in cells.items()}
    own = {s: g for s, g in own.items() if len(g) >= MIN_NGRAMS}
    found = []
    for a, b in combinations(sorted(own), 2):
        shared = len(own[a] & own[b])
        score = shared / len(own[a] | own[b])
        if score >= threshold:
            found.append(Match(a, b, score, shared))
    reference = ngrams(master) - base
    for s in sorted(own):
        shared = len(own[s] & reference)
        if shared / len(own[s]) >= threshold:
            found.append(Match(s, "(master)", shared / len(own[s]), shared))
    return sorted(found, key=lambda m: (-m.score, m.a, m.b))


def write(out: Path, matches: list[Match]) -> Path:
    """OUT/similarity.csv."""
    path = out / "similarity.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["student", "similar_to", "score", "shared_ngrams"])
        for m in matches:
            writer.writerow([csv_cell(m.a), csv_cell(m.b), f"{m.score:.3f}", m.shared])
    return path
