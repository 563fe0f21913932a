"""``lens=`` / ``tuned=``: a lens object, or a path whose kind is read from its contents.

:func:`pick_lens` turns what a caller passed into a checked :class:`~logitscope.engine.lens.Lens`:

* ``None`` or ``"logit"``: the logit lens;
* an object with the protocol's methods (``kind``, ``describe``, ``covers``, ``transform``,
  ``check_model``): used as it is, after ``check_model``;
* ``"demo"``: the tuned lens shipped for the bundled demo model;
* a path: its kind is detected by :func:`lens_kind` from what is there, then loaded by that
  kind's loader in :data:`KINDS`.

Lens kinds on disk:

========== =================================================================================
tuned      a folder: ``config.json`` + ``params.pt`` (tuned-lens 0.2.0, :mod:`logitscope.tuned`)
jacobian   a ``torch.save`` file of ``{"J": {...}, "source_layers": ..., "d_model": ...}``
           (:mod:`logitscope.jacobian`)
========== =================================================================================

To add a kind: write its lens class (the protocol in :mod:`logitscope.engine.lens`), a
``detect(path) -> bool`` that looks at the contents cheaply, and a ``load(path) -> Lens``, and add
a :class:`LensKind` to :data:`KINDS` (docs/architecture.md walks through the Jacobian lens).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..engine.lens import LOGIT_LENS, Lens
from ..errors import InputError

_PROTOCOL = ("kind", "describe", "covers", "transform", "check_model")


@dataclass(frozen=True)
class LensKind:
    """One kind of lens file.

    Attributes:
        name: the kind (``"tuned"``, ``"jacobian"``), as the lens's ``kind``.
        detect: ``detect(path)``: whether the (existing) path holds a lens of this kind; must be
            cheap and must not raise for other kinds' files.
        load: ``load(path)``: the lens (unchecked: :func:`pick_lens` calls ``check_model``).
    """

    name: str
    detect: Callable[[Path], bool]
    load: Callable[[Path], Lens]


def _is_tuned(path: Path) -> bool:
    return path.is_dir()


def _load_tuned(path: Path) -> Lens:
    from ..tuned.lens import load_lens

    return load_lens(path)


def _is_jacobian(path: Path) -> bool:
    """A ``torch.save`` file whose top level is a dict with a ``"J"`` entry (read lazily, no code run)."""
    if not path.is_file():
        return False
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a torch zip file (or damaged): not this kind
        return False
    return isinstance(saved, dict) and "J" in saved


def _load_jacobian(path: Path) -> Lens:
    from ..jacobian import JacobianLens

    return JacobianLens.load(path)


# Tried in order; the first kind whose ``detect`` accepts the path loads it.
KINDS: list[LensKind] = [
    LensKind("tuned", _is_tuned, _load_tuned),
    LensKind("jacobian", _is_jacobian, _load_jacobian),
]


def lens_kind(path) -> str:
    """The kind of the lens stored at ``path`` (``"tuned"``, ``"jacobian"``), from its contents.

    Raises:
        InputError: nothing there, or nothing logitscope can read as a lens.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"no lens at {p}: no such file or folder")
    for kind in KINDS:
        if kind.detect(p):
            return kind.name
    raise InputError(
        f"{p} is not a lens logitscope can read: a tuned lens is a folder (config.json + params.pt), "
        "a Jacobian lens a torch.save file of a dict with 'J'"
    )


def load_lens_path(path) -> Lens:
    """The lens stored at ``path``, loaded by the loader of its :func:`lens_kind` (not yet checked)."""
    p = Path(path).expanduser()
    if not p.exists() and not p.suffix:  # a folder that is not there: the tuned lens's own message
        return _load_tuned(p)
    name = lens_kind(p)
    return next(k for k in KINDS if k.name == name).load(p)


def is_lens(obj) -> bool:
    """Whether ``obj`` has every attribute of the Lens protocol."""
    return all(hasattr(obj, name) for name in _PROTOCOL)


def pick_lens(scope, *, lens=None, tuned=None, strict: bool = True) -> Lens:
    """The checked lens a ``lens=`` or ``tuned=`` argument names (both: an ``InputError``).

    Args:
        scope: the :class:`~logitscope.Scope` the lens will run on (``check_model`` target).
        lens: a Lens object, a path, ``"logit"``, ``"demo"`` or ``None``.
        tuned: the older spelling: a :class:`~logitscope.tuned.TunedLens`, a folder or ``"demo"``.
        strict: passed to ``check_model`` (refuse a lens whose unembedding hash differs).

    Raises:
        InputError: both given, or something that is not a lens.
        LensMismatchError: the lens was made for another model.
    """
    if lens is not None and tuned is not None:
        raise InputError("give lens= or tuned=, not both")
    what = "tuned" if tuned is not None else "lens"
    given = tuned if tuned is not None else lens
    if given is None or (isinstance(given, str) and given == "logit" and what == "lens"):
        return LOGIT_LENS
    if isinstance(given, str) and given == "demo":
        chosen = _load_tuned("demo")
    elif isinstance(given, (str, os.PathLike)):
        chosen = load_lens_path(given)
    elif is_lens(given):
        chosen = given
    elif what == "tuned":
        raise InputError(f"tuned= takes a TunedLens, a folder or 'demo', not {type(given).__name__}")
    else:
        raise InputError(
            f"lens= takes a lens object, a lens folder or file, 'logit' or 'demo', not {type(given).__name__}"
        )
    chosen.check_model(scope, strict=strict)
    return chosen
