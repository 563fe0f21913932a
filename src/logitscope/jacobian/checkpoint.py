"""Resumable Jacobian-lens fit checkpoints: one file, written atomically, read with ``weights_only``.

The layout extends the published estimator's (``{"jacobian_sum", "n_done", "next_idx",
"source_layers", "target_layer", "skip_first"}``) with a format tag and the settings that change
the result. ``jacobian_sum`` is the float64 sum of the per-prompt Jacobians over the ``n_done``
prompts fitted among the first ``next_idx`` prompts of the sequence. Saving the exact running
sum (not the mean) makes a resumed fit bit-identical to an uninterrupted one; an interruption
loses at most the prompts since the last write (``save_every``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CorruptWeightsError, InputError
from ..io.atomic import atomic_file

FORMAT = "logitscope-jacobian-lens-checkpoint/1"
RESUME_KEYS = ("source_layers", "target_layer", "skip_first", "max_seq_len", "dim_batch", "d_model", "n_layers")


def default_path(out) -> Path:
    """Where ``fit-jlens --out FILE.pt`` keeps its checkpoint: ``FILE.pt.ckpt`` beside it."""
    out = Path(out).expanduser()
    return out.with_name(out.name + ".ckpt")


def save_checkpoint(path, *, jacobian_sum: dict, n_done: int, next_idx: int, settings: dict, stats: dict) -> None:
    """Write the running state (atomically: the old checkpoint stays until the new one is complete)."""
    state = {
        "format": FORMAT,
        "jacobian_sum": {int(k): v.detach().cpu() for k, v in jacobian_sum.items()},
        "n_done": int(n_done),
        "next_idx": int(next_idx),
        **{k: settings[k] for k in RESUME_KEYS},
        "settings": dict(settings),
        "stats": dict(stats),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, settings: dict) -> dict:
    """Read a checkpoint and refuse one written under settings that would give another lens."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint to resume from at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - damaged files raise many types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorruptWeightsError(f"{path}: cannot read the checkpoint ({first[:200]})") from None
    if isinstance(state, dict) and "J" in state and "jacobian_sum" not in state:
        raise InputError(f"{path} is a finished Jacobian lens, not a fit checkpoint: nothing to resume")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptWeightsError(f"{path}: not a logitscope Jacobian-lens fit checkpoint")
    diff = [k for k in RESUME_KEYS if state.get(k) != settings.get(k)]
    if diff:
        detail = ", ".join(f"{k}: {state.get(k)!r} → {settings.get(k)!r}" for k in diff)
        raise InputError(f"{path} was written with other fit settings ({detail}); resume with the same ones")
    return state
