"""Build the scaling lesson's data files from local copies of two public repositories.

Writes, under course_utils/scaling/data/:
- chinchilla_points.csv: the (N, D, loss) runs Epoch AI extracted from Hoffmann et al. 2022's
  Figure 4 (epoch-research/analyzing-chinchilla, data/svg_extracted_data.csv);
- pythia_evals.csv: EleutherAI's zero-shot evaluations of every standard and deduplicated Pythia
  model (70m ... 12b) at its 27 evaluated checkpoints (EleutherAI/pythia,
  evals/pythia-v1/<size>[-deduped]/zero-shot/*.json; the standard 1b lives in pythia-1b-bf16).

Each file starts with `#` lines giving its source repository, file, commit, licence and the
transformation. Nothing is downloaded: pass the paths of local copies and the commits they are at.

Run:
  python scripts/build_scaling_data.py \
      --chinchilla-csv analyzing-chinchilla/data/svg_extracted_data.csv --chinchilla-commit SHA \
      --pythia-evals pythia/evals/pythia-v1 --pythia-commit SHA
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "course_utils" / "scaling" / "data"

SIZES = ("70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")
TASKS = ("piqa", "winogrande", "arc_easy", "arc_challenge", "sciq", "logiqa", "wsc")
EVAL_FIELDS = (
    "size",
    "deduped",
    "step",
    "lambada_ppl",
    "lambada_ppl_stderr",
    "lambada_acc",
    "lambada_acc_stderr",
    *(f"{task}_{kind}" for task in TASKS for kind in ("acc", "acc_stderr")),
)
OUTLIERS = 5
"""Epoch AI drop the runs with the 5 highest losses before fitting (data_analysis.ipynb)."""


def _sig(value: float, digits: int = 6) -> str:
    """`value` with `digits` significant digits (the evaluations' own precision is far coarser)."""
    return f"{value:.{digits}g}"


def _header(lines: list[str]) -> str:
    """`lines` as `# ` comment lines."""
    return "".join(f"# {line}\n" for line in lines)


def build_chinchilla(source: Path, commit: str) -> Path:
    """Write chinchilla_points.csv: N, D = C / (6 N), loss, and Epoch's outlier flag."""
    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    runs = [
        (float(r["Model Size"]), float(r["Training FLOP"]), float(r["loss"]))
        for r in rows
        if r["Model Size"] and r["Training FLOP"] and r["loss"]
    ]
    cutoff = sorted(loss for _, _, loss in runs)[-OUTLIERS]
    path = OUT / "chinchilla_points.csv"
    with open(path, "w", newline="") as f:
        f.write(
            _header(
                [
                    "Training runs of Hoffmann et al. 2022 (Chinchilla), as extracted from their Figure 4",
                    "by Besiroglu, Erdil, Barnett and You (Epoch AI) 2024, 'Chinchilla Scaling: A",
                    "replication attempt', https://arxiv.org/abs/2404.10102.",
                    "Source: https://github.com/epoch-research/analyzing-chinchilla, file",
                    f"data/svg_extracted_data.csv, commit {commit}.",
                    "Licence: the repository carries no licence file; these are measurements read off a",
                    "published figure (facts), redistributed with attribution to both papers.",
                    "Transformation: kept columns 'Model Size' (N, parameters), 'Training FLOP' (C) and",
                    "'loss' (nats/token), each as the source's float; added D = C / (6 N) tokens, as",
                    f"Epoch's analysis does; outlier = 1 for the {OUTLIERS} highest losses, the runs",
                    f"Epoch drop before fitting (loss >= {cutoff!r}). Rows in the source's order.",
                ]
            )
        )
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["N", "C", "D", "loss", "outlier"])
        for n, c, loss in runs:
            writer.writerow([repr(n), repr(c), repr(c / (6 * n)), repr(loss), int(loss >= cutoff)])
    return path


def _eval_files(root: Path, size: str, deduped: bool) -> list[tuple[int, Path]]:
    """(step, path) of one model's zero-shot result files, sorted by step."""
    folder = f"pythia-{size}-deduped" if deduped else f"pythia-{size}"
    if size == "1b" and not deduped:
        folder = "pythia-1b-bf16"  # where EleutherAI keep the standard 1b model's results
    files = sorted((root / folder / "zero-shot").glob("*.json"))
    steps = [int(re.search(r"step(\d+)\.json$", p.name).group(1)) for p in files]
    return sorted(zip(steps, files, strict=True))


def build_pythia(root: Path, commit: str) -> Path:
    """Write pythia_evals.csv: one row per (size, deduped, step), LAMBADA and 7 other tasks."""
    rows = []
    for size in SIZES:
        for deduped in (False, True):
            for step, path in _eval_files(root, size, deduped):
                data = json.loads(path.read_text())
                model_args = data["config"]["model_args"]
                if f"revision=step{step}" not in model_args or data["config"]["num_fewshot"] != 0:
                    raise ValueError(f"{path}: not the zero-shot result of step {step}")
                results = data["results"]
                lambada = results["lambada_openai"]
                row = [size, int(deduped), step]
                row += [_sig(lambada[k]) for k in ("ppl", "ppl_stderr", "acc", "acc_stderr")]
                for task in TASKS:
                    row += [_sig(results[task]["acc"]), _sig(results[task]["acc_stderr"])]
                rows.append(row)
    path = OUT / "pythia_evals.csv"
    with open(path, "w", newline="") as f:
        f.write(
            _header(
                [
                    "Zero-shot evaluations (EleutherAI lm-evaluation-harness) of the Pythia suite,",
                    "Biderman et al. 2023, https://arxiv.org/abs/2304.01373.",
                    "Source: https://github.com/EleutherAI/pythia, files",
                    "evals/pythia-v1/pythia-<size>[-deduped]/zero-shot/*.json (the standard 1b model:",
                    f"pythia-1b-bf16/zero-shot/), commit {commit}.",
                    "Licence: Apache License 2.0 (the repository's LICENSE).",
                    "Transformation: for the 16 models (8 sizes, standard and deduped) x 27 evaluated",
                    "steps, kept lambada_openai ppl and acc and the acc of piqa, winogrande, arc_easy,",
                    "arc_challenge, sciq, logiqa, wsc, each with its stderr, rounded to 6 significant",
                    "digits; deduped = 1 for models trained on the deduplicated Pile.",
                ]
            )
        )
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(EVAL_FIELDS)
        writer.writerows(rows)
    return path


def main() -> None:
    """Parse the paths and commits, write both files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chinchilla-csv", type=Path, required=True)
    parser.add_argument("--chinchilla-commit", required=True)
    parser.add_argument("--pythia-evals", type=Path, required=True, help="evals/pythia-v1 folder")
    parser.add_argument("--pythia-commit", required=True)
    args = parser.parse_args()
    for commit in (args.chinchilla_commit, args.pythia_commit):
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise ValueError(f"commits must be 40-hex-digit git hashes, got {commit!r}")
    OUT.mkdir(parents=True, exist_ok=True)
    print(build_chinchilla(args.chinchilla_csv, args.chinchilla_commit))
    print(build_pythia(args.pythia_evals, args.pythia_commit))


if __name__ == "__main__":
    main()
