"""Resumable training checkpoints: one file, written atomically, read without running pickled code.

A checkpoint holds the step reached, the translators, the optimizer state (momentum buffers),
the training settings and the per-step log. It is written to a temporary name and moved into
place (:func:`logitscope.io.atomic.atomic_file`), so an interruption loses at most the steps since
the last one and never leaves a damaged file. The data position needs no state: the window
sequence is a pure function of the data, ``seq_len`` and ``seed``, and a resumed run skips the
windows already used.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CorruptWeightsError, InputError
from ..io.atomic import atomic_file

FORMAT = "logitscope-tuned-lens-checkpoint/1"
# settings that change the result: a checkpoint resumes only under the same values
RESUME_KEYS = (
    "steps",
    "tokens_per_step",
    "seq_len",
    "lr",
    "momentum",
    "weight_decay",
    "warmup_steps",
    "grad_clip",
    "seed",
)


def default_path(out) -> Path:
    """Where ``train-lens --out DIR`` keeps its checkpoint: ``DIR.ckpt.pt`` beside the output folder."""
    out = Path(out).expanduser()
    return out.with_name(out.name + ".ckpt.pt")


def save_checkpoint(path, *, step: int, lens, optimizer, settings: dict, log: list) -> None:
    """Write a checkpoint of the state after ``step`` completed steps (atomically)."""
    state = {
        "format": FORMAT,
        "step": int(step),
        "lens_config": lens.config.to_dict(),
        "translators": {k: v.detach().cpu() for k, v in lens.translators.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "settings": dict(settings),
        "log": list(log),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        import torch

        torch.save(state, tmp)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint to resume from at {path}")
    try:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - damaged files raise many types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorruptWeightsError(f"{path}: cannot read the checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptWeightsError(f"{path}: not a logitscope tuned-lens checkpoint")
    return state


def check_resumable(state: dict, settings: dict, path) -> None:
    """Refuse to resume under settings that would give a different lens."""
    old = state.get("settings", {})
    diff = [k for k in RESUME_KEYS if old.get(k) != settings.get(k)]
    if diff:
        detail = ", ".join(f"{k}: {old.get(k)!r} → {settings.get(k)!r}" for k in diff)
        raise InputError(f"{path} was written with other training settings ({detail}); resume with the same ones")
