"""Real published scaling data shipped with the course: the Chinchilla training runs (as Epoch AI
extracted them) and EleutherAI's zero-shot evaluations of the Pythia suite.

The CSV files in `data/` start with `#` lines naming their source repository, file, commit,
licence and transformation (`data_provenance`); `scripts/build_scaling_data.py` rebuilds them
from local copies of the sources. Loaders return plain dicts of NumPy columns.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

import numpy as np

from course_utils.scaling.constants import PYTHIA, PYTHIA_TOKENS_PER_STEP

FILES = {"chinchilla": "chinchilla_points.csv", "pythia": "pythia_evals.csv"}

PYTHIA_TASKS = (
    "lambada",
    "piqa",
    "winogrande",
    "arc_easy",
    "arc_challenge",
    "sciq",
    "logiqa",
    "wsc",
)
"""Tasks of `load_pythia_evals`: each has `<task>_acc` and `<task>_acc_stderr`; LAMBADA also has
`lambada_ppl` and `lambada_ppl_stderr` (perplexity of the passage's last word)."""


def _read(name: str) -> tuple[list[str], list[list[str]]]:
    """(provenance lines, rows with the header first) of a shipped data file."""
    if name not in FILES:
        raise ValueError(f"name must be one of {tuple(FILES)}, got {name!r}")
    text = resources.files("course_utils.scaling").joinpath("data", FILES[name]).read_text()
    lines = text.splitlines()
    notes = [line[2:] for line in lines if line.startswith("#")]
    rows = list(csv.reader(line for line in lines if line and not line.startswith("#")))
    return notes, rows


def data_provenance(name: str) -> str:
    """Where a shipped data file ("chinchilla" or "pythia") comes from and how it was made."""
    return "\n".join(_read(name)[0])


@cache
def _columns(name: str) -> dict[str, list[str]]:
    """The columns of a shipped data file, as strings, read once."""
    _, rows = _read(name)
    header, body = rows[0], rows[1:]
    return {key: [row[i] for row in body] for i, key in enumerate(header)}


def load_chinchilla_points() -> dict[str, np.ndarray]:
    """The 245 Chinchilla training runs: columns N (parameters), D (tokens), C (FLOPs), loss
    (nats/token) and `outlier` (bool: the 5 highest losses, which Epoch AI drop before fitting)."""
    columns = _columns("chinchilla")
    points = {key: np.array(columns[key], dtype=float) for key in ("N", "D", "C", "loss")}
    points["outlier"] = np.array(columns["outlier"], dtype=int).astype(bool)
    return points


def load_pythia_evals() -> dict[str, np.ndarray]:
    """Zero-shot evaluations of 16 Pythia models (70m-12b, standard and deduped) at 27 steps each.

    Columns: size (str), deduped (bool), step, tokens (step x 2,097,152), params and
    non_embedding_params (from `PYTHIA`), and per task of `PYTHIA_TASKS` its accuracy and
    standard error; LAMBADA also its perplexity. One row per (size, deduped, step).
    """
    columns = _columns("pythia")
    evals: dict[str, np.ndarray] = {
        "size": np.array(columns["size"]),
        "deduped": np.array(columns["deduped"], dtype=int).astype(bool),
        "step": np.array(columns["step"], dtype=np.int64),
    }
    evals["tokens"] = evals["step"] * PYTHIA_TOKENS_PER_STEP
    evals["params"] = np.array([PYTHIA[s].params for s in evals["size"]], dtype=np.int64)
    evals["non_embedding_params"] = np.array(
        [PYTHIA[s].non_embedding_params for s in evals["size"]], dtype=np.int64
    )
    for key in columns:
        if key not in evals:
            evals[key] = np.array(columns[key], dtype=float)
    return evals
