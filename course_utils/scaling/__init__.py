"""Scaling laws: published constants, fits, compute-optimal allocation, real published data (the
Chinchilla runs, the Pythia evaluations) and the Pythia suite, real and mini.

Modules: `constants` (published constants and tables), `fitting` (power laws, approach 3,
allocation), `datasets` (the shipped data files and their loaders), `pythia` (checkpoints and
suite evaluation), `mini_suite` (the offline twin). Every public name is importable from here.
"""

from course_utils.scaling.constants import (
    CHINCHILLA,
    CHINCHILLA_REPLICATION,
    KAPLAN,
    PF_DAY,
    PYTHIA,
    PYTHIA_LAMBADA_PERPLEXITY,
    PYTHIA_STEPS,
    PYTHIA_TOKENS_PER_STEP,
    ChinchillaFit,
    KaplanLaws,
    PythiaModel,
    non_embedding_params,
)
from course_utils.scaling.datasets import (
    PYTHIA_TASKS,
    data_provenance,
    load_chinchilla_points,
    load_pythia_evals,
)
from course_utils.scaling.fitting import (
    HUBER_DELTA,
    BoundaryFitWarning,
    PowerLaw,
    compute_optimal,
    fit_chinchilla,
    fit_power_law,
)
from course_utils.scaling.mini_suite import MINI_PYTHIA, mini_suite
from course_utils.scaling.pythia import (
    CSV_FIELDS,
    count_non_embedding,
    encode_bytes,
    evaluate_suite,
    load_pythia,
    pythia_tokenizer,
)

__all__ = [
    "CHINCHILLA",
    "CHINCHILLA_REPLICATION",
    "CSV_FIELDS",
    "HUBER_DELTA",
    "KAPLAN",
    "MINI_PYTHIA",
    "PF_DAY",
    "PYTHIA",
    "PYTHIA_LAMBADA_PERPLEXITY",
    "PYTHIA_STEPS",
    "PYTHIA_TASKS",
    "PYTHIA_TOKENS_PER_STEP",
    "BoundaryFitWarning",
    "ChinchillaFit",
    "KaplanLaws",
    "PowerLaw",
    "PythiaModel",
    "compute_optimal",
    "count_non_embedding",
    "data_provenance",
    "encode_bytes",
    "evaluate_suite",
    "fit_chinchilla",
    "fit_power_law",
    "load_chinchilla_points",
    "load_pythia",
    "load_pythia_evals",
    "mini_suite",
    "non_embedding_params",
    "pythia_tokenizer",
]
