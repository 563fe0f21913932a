"""Corpus-scale evaluation: per-layer cross-entropy, KL, entropy and top-1 curves over a dataset.

``run.py`` holds the loop (corpus → windows → captured forward → streaming kernel → sums),
``intervals.py`` the point metrics and confidence intervals, ``result.py`` :class:`EvalResult`.
"""

from .intervals import LN2, METRICS, SUMS
from .result import EvalResult
from .run import run_eval

__all__ = ["EvalResult", "run_eval", "METRICS", "SUMS", "LN2"]
