"""``Scope.train_lens``: settings → :class:`TrainConfig`, progress display, output folder and checkpoint handling."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .checkpoint import default_path
from .progress import TrainProgress

LOG_FILE = "training_log.json"


def check_out(out) -> Path:
    """``out`` must be a directory or not exist yet (its parent is created); checked before training."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    return out


def fit(
    scope,
    data,
    *,
    out=None,
    checkpoint=None,
    resume: bool = False,
    lens=None,
    dist=None,
    progress: bool = False,
    **settings,
):
    """Train a tuned lens on ``data``; with ``out``, write it there with its ``training_log.json``.

    ``settings`` are :class:`TrainConfig` fields. Checkpoints go to ``checkpoint`` (default:
    ``OUT.ckpt.pt`` beside ``out``) every ``save_every`` steps; ``resume=True`` continues from it.
    The output folder appears only when training has finished (written atomically); the
    checkpoint is then removed.
    """
    from .train import TrainConfig, train_lens  # torch: only when training

    unknown = set(settings) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown training settings: {', '.join(sorted(unknown))}")
    config = TrainConfig(**settings)
    out = check_out(out) if out is not None else None
    if checkpoint is None and out is not None:
        checkpoint = default_path(out)
    if resume and checkpoint is None:
        raise InputError("resume=True needs a checkpoint path (or out=, whose checkpoint is OUT.ckpt.pt)")
    is_main = dist is None or dist.is_main
    with TrainProgress(enabled=progress and is_main) as update:
        lens = train_lens(
            scope, data, config=config, lens=lens, checkpoint=checkpoint, resume=resume, dist=dist, progress=update
        )
    if out is not None and is_main:
        lens.source = str(out)
        write_lens_folder(lens, out)
        Path(checkpoint).unlink(missing_ok=True)
    return lens


def write_lens_folder(lens, out) -> Path:
    """The lens in tuned-lens layout plus ``training_log.json``, moved into ``out`` in one step."""
    from .lens import save_lens

    log = getattr(lens, "training_log", None)
    return save_lens(lens, out, extra={LOG_FILE: json.dumps(log, indent=1) + "\n"} if log is not None else None)
