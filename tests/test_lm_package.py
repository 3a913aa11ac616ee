"""course_utils.lm is a package with one concept per module, re-exporting every name users import."""

import importlib
import json
import re
from pathlib import Path

import pytest

import course_utils.lm as lm

ROOT = Path(__file__).resolve().parents[1]
IMPORT_RE = re.compile(r"from course_utils\.lm import (?:\(([^)]*)\)|([\w ,]+))")
CONCEPTS = {
    "masked": {"PLL_VARIANTS", "mask_tokens", "pseudo_log_likelihood", "pseudo_perplexity"},
    "causal": {"Window", "perplexity", "sliding_windows", "token_log_probs"},
    "tiny": {"SPECIAL_TOKENS", "CharTokenizer", "tiny_causal_lm", "tiny_mlm", "train_mlm"},
}


def source_texts() -> list[str]:
    """Python sources and notebook code cells of the notebooks, solutions, tests, benchmarks, scripts."""
    texts = []
    for folder in ("notebooks", "solutions", "exercises", "tests", "benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix == ".py":
                texts.append(path.read_text(encoding="utf-8"))
            elif path.suffix == ".ipynb":
                cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
                texts += ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return texts


def imported_names() -> set[str]:
    """Every name imported with `from course_utils.lm import ...` in the repository."""
    names = set()
    for text in source_texts():
        for match in IMPORT_RE.finditer(text):
            listed = re.sub(r"#.*", "", match.group(1) or match.group(2))
            names |= {n.strip() for n in listed.split(",") if n.strip()}
    return names


def test_every_imported_name_is_exported_by_the_package():
    names = imported_names()
    assert {"pseudo_log_likelihood", "perplexity", "tiny_mlm", "CharTokenizer"} <= names
    assert names <= set(lm.__all__), sorted(names - set(lm.__all__))


@pytest.mark.parametrize("module", sorted(CONCEPTS))
def test_each_name_lives_in_its_concept_module(module):
    concept = importlib.import_module(f"course_utils.lm.{module}")
    for name in CONCEPTS[module]:
        assert getattr(lm, name) is getattr(concept, name), (module, name)


def test_the_package_exports_exactly_the_concept_modules_names():
    assert set(lm.__all__) == set().union(*CONCEPTS.values())
