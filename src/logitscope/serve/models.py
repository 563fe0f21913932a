"""The models a server holds, by name: loaded once at start, never chosen by a path in a request."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import LogitscopeError
from .slots import Slot


class UnknownModelError(LogitscopeError):
    """A request named a model the server was not started with (HTTP 404)."""


@dataclass
class Entry:
    """One served model.

    Attributes:
        name: the name the page picks it by.
        scope: the loaded :class:`~logitscope.Scope`.
        slot: its request queue.
        vocab_key: fingerprint of its vocabulary (size + tokenizer vocabulary); two models can be
            compared only when these are equal.
        summary: what ``GET /api/models`` says about it.
        tuned: its tuned lens (``--tuned NAME=DIR``, or the shipped one for the demo model), or ``None``.
        jacobian: its Jacobian lens (``--jacobian NAME=FILE``, or the demo model's shipped one), or ``None``.
    """

    name: str
    scope: Any
    slot: Slot
    vocab_key: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    tuned: Any = None
    jacobian: Any = None


def vocab_fingerprint(scope) -> str | None:
    """A hash of the head's vocabulary size and the tokenizer's token → id table (``None``: no head)."""
    if scope.parts is None:
        return None
    digest = hashlib.sha256(str(scope.parts.vocab_size).encode())
    tok = scope.tokenizer
    if tok is not None:
        for piece, idx in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
            digest.update(f"{idx}\t{piece}\n".encode())
    return digest.hexdigest()[:16]


def summarize(name: str, scope) -> dict[str, Any]:
    """Facts the page needs to build its controls for a model."""
    from ..engine.inputs import context_limit

    tok = scope.tokenizer
    parts = scope.parts
    return {
        "name": name,
        "kind": scope.kind,
        "model_type": scope.model.config.model_type,
        "n_layers": parts.n_blocks if parts else None,
        "vocab_size": parts.vocab_size if parts else int(scope.model.get_input_embeddings().weight.shape[0]),
        "context_length": context_limit(scope.model.config),
        "mask_token": getattr(tok, "mask_token", None) if tok is not None else None,
        "has_tokenizer": tok is not None,
        "has_head": parts is not None,
    }


def find_tuned(scope, folder=None):
    """The tuned lens of a served model: ``folder`` (checked against the model), else the shipped
    demo lens when ``scope`` is the bundled demo model (its unembedding hash matches), else ``None``."""
    from ..errors import LogitscopeError
    from ..tuned.lens import TunedLens, stream_width

    if folder is not None:
        return TunedLens.load(folder, scope=scope)
    if scope.parts is None:
        return None
    try:
        demo = TunedLens.load("demo")
        if demo.n_layers != scope.parts.n_blocks or demo.d_model != stream_width(scope):
            return None  # cheap shape test before hashing the unembedding
        demo.check(scope, strict=True)
    except LogitscopeError:
        return None
    return demo


def find_jacobian(scope, file=None):
    """The Jacobian lens of a served model: ``file`` (checked against the model), else the shipped
    demo lens when it fits ``scope`` (width, blocks and unembedding hash), else ``None``."""
    from ..errors import LogitscopeError
    from ..jacobian import JacobianLens

    if file is not None:
        return JacobianLens.load(file, scope=scope)
    if scope.parts is None:
        return None
    try:
        demo = JacobianLens.load("demo")
        if not demo.metadata.get("unembed_hash"):
            return None  # no fingerprint: never attach the demo lens to a look-alike model
        demo.check(scope)
    except LogitscopeError:
        return None
    return demo


def build_entries(
    scopes: dict[str, Any], max_queue: int, tuned: dict[str, Any] | None = None, jacobian: dict[str, Any] | None = None
) -> dict[str, Entry]:
    """Wrap named scopes as :class:`Entry` objects, each with its own queue.

    Args:
        scopes: ``{name: Scope}``.
        max_queue: requests waiting per model.
        tuned: ``{name: tuned-lens folder}`` given at start (``--tuned NAME=DIR``).
        jacobian: ``{name: J-lens file}`` given at start (``--jacobian NAME=FILE``).

    Raises:
        InputError: ``tuned`` or ``jacobian`` names a model the server does not hold.
    """
    from ..errors import InputError

    if not scopes:
        raise ValueError("serve needs at least one model")
    tuned, jacobian = dict(tuned or {}), dict(jacobian or {})
    for flag, given in (("--tuned", tuned), ("--jacobian", jacobian)):
        unknown = set(given) - set(scopes)
        if unknown:
            raise InputError(f"{flag} names {', '.join(sorted(unknown))}; the served models are: {', '.join(scopes)}")
    out = {}
    for name, scope in scopes.items():
        entry = Entry(name, scope, Slot(name, max_queue), vocab_fingerprint(scope), summarize(name, scope))
        entry.tuned = find_tuned(scope, tuned.get(name))
        entry.summary["tuned_lens"] = entry.tuned.describe() if entry.tuned is not None else None
        entry.jacobian = find_jacobian(scope, jacobian.get(name))
        entry.summary["jacobian_lens"] = entry.jacobian.describe() if entry.jacobian is not None else None
        out[name] = entry
    return out


def display_name(model: str) -> str:
    """The page's name for a model given on the command line: ``demo``, a hub id, or a path's last part."""
    text = os.fspath(model).rstrip("/\\")
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        return os.path.basename(text) or text
    return text


def load_scopes(
    models: list[str], *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False, **mem
):
    """Load each model once (``demo`` when none is given) into ``{name: Scope}`` with unique names.

    ``mem``: ``load()``'s ``device_map``/``max_memory``/``offload_folder``.
    """
    from ..loading import load

    out: dict[str, Any] = {}
    for model in models or ["demo"]:
        name = base = display_name(model)
        n = 2
        while name in out:
            name, n = f"{base}-{n}", n + 1
        out[name] = load(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, **mem)
    return out
