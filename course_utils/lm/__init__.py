"""Language-model likelihoods: masked LMs' pseudo-log-likelihood, causal LMs' sliding-window
perplexity, and tiny offline models of both kinds.

Modules: `masked` (BERT masking, batched pseudo-log-likelihood), `causal` (sliding windows,
per-token log-probabilities, perplexity), `tiny` (offline tokenizers and small models, MLM
training). Every public name is importable from here.
"""

from course_utils.lm.causal import Window, perplexity, sliding_windows, token_log_probs
from course_utils.lm.masked import (
    PLL_VARIANTS,
    mask_tokens,
    pseudo_log_likelihood,
    pseudo_perplexity,
)
from course_utils.lm.tiny import (
    SPECIAL_TOKENS,
    CharTokenizer,
    tiny_causal_lm,
    tiny_mlm,
    train_mlm,
)

__all__ = [
    "PLL_VARIANTS",
    "SPECIAL_TOKENS",
    "CharTokenizer",
    "Window",
    "mask_tokens",
    "perplexity",
    "pseudo_log_likelihood",
    "pseudo_perplexity",
    "sliding_windows",
    "tiny_causal_lm",
    "tiny_mlm",
    "token_log_probs",
    "train_mlm",
]
