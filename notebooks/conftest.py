"""nbval hook for the lessons: a cell whose output shows a bare object repr fails.

A line like `<torch._C.Generator at 0x7f...>` is noise a reader cannot use (an unassigned return value
or a printed object). The check reads the outputs nbval already collected while it ran the cell, so it
adds no execution of its own.
"""

from __future__ import annotations

import re

import pytest

BARE_REPR_RE = re.compile(r"<[A-Za-z_][\w.]*(?: [^<>\n]*)? at 0x[0-9a-fA-F]+>")


def bare_reprs(outputs: list[dict]) -> list[str]:
    """Every bare object repr (`<... at 0x...>`) in the text of a cell's outputs."""
    texts = [o.get("text", "") for o in outputs if o.get("output_type") == "stream"]
    texts += [o.get("data", {}).get("text/plain", "") for o in outputs]
    return [m.group() for text in texts for m in BARE_REPR_RE.finditer(text)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """After nbval runs a cell, fail it if its outputs show a bare object repr."""
    result = yield
    found = bare_reprs(getattr(item, "test_outputs", None) or [])
    if found:
        item.raise_cell_error(
            f"output shows a bare object repr {found[0]!r}: end the line with `;`, assign the "
            "value, or print what the reader needs"
        )
    return result
