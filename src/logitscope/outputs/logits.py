"""The model's own output logits at every position, and greedy decoding with per-step logits.

:func:`run_logits` implements :meth:`logitscope.Scope.logits`. Positions follow the lens: the input
tokens for causal and masked LMs, the decoder tokens (start token, then any target) for
encoder-decoder models. Every logits row comes from ``model(...).logits``, never from a re-projection.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine.capture import pad_guard
from ..engine.inputs import (
    Encoded,
    context_limit,
    display_tokens,
    encode_all,
    length_batches,
    model_inputs,
)
from ..engine.nonfinite import check_finite
from ..errors import ContextLengthError, InputError
from .display import shown
from .top_tokens import SCHEMA_VERSION, TopTokens, top_tokens  # noqa: F401 - TopTokens: public here too


@dataclass
class LogitsResult:
    """The model's output logits for one input.

    ``P`` = positions, ``V`` = vocabulary size. Positions are the input tokens (causal and masked
    LMs), the decoder tokens (encoder-decoder: the start token, then the target if one was
    given), or the greedy steps when ``generate=`` was used (row ``i`` predicts generated token ``i``).

    Attributes:
        logits: (P, V) tensor, float32 on CPU unless ``device=``/``dtype=`` asked otherwise.
        token_ids: (P,) the token at each position; tokens: (P,) their display strings.
        target_ids: (P,) the token each row is scored against, -1 for none: the next input token
            (causal), the token itself (masked), the next decoder token (seq2seq), the generated
            token (``generate=``).
        source_ids: encoder input (seq2seq) or prompt (causal ``generate=``), else ``None``.
        generated_ids: (N,) the greedy tokens when ``generate=N`` was used (fewer if EOS came first).
        generated_text: their decoded text.
        mask_positions: (M,) positions holding the tokenizer's mask token (masked LMs; else empty).
        meta: model name, model type, kind.
    """

    logits: torch.Tensor
    token_ids: np.ndarray
    tokens: list[str]
    target_ids: np.ndarray
    source_ids: np.ndarray | None = None
    generated_ids: np.ndarray | None = None
    generated_text: str | None = None
    mask_positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    meta: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        P = len(self.tokens)
        if self.logits.dim() != 2 or self.logits.shape[0] != P:
            raise ValueError(f"logits must be (P={P}, V), got {tuple(self.logits.shape)}")
        self.token_ids = np.asarray(self.token_ids, dtype=np.int64).reshape(P)
        self.target_ids = np.asarray(self.target_ids, dtype=np.int64).reshape(P)
        self.mask_positions = np.asarray(self.mask_positions, dtype=np.int64).reshape(-1)
        for name in ("source_ids", "generated_ids"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64).reshape(-1))

    def __repr__(self) -> str:
        P, V = self.logits.shape
        return f"LogitsResult({self.meta.get('model', '?')}, {P} positions x {V} vocab, kind={self.meta.get('kind')})"

    _repr_html_ = shown("logits_html")

    @property
    def probs(self) -> torch.Tensor:
        """(P, V) softmax probabilities (float32)."""
        return self.logits.float().softmax(-1)

    def top(self, k: int = 5, positions=None) -> TopTokens:
        """The k most likely tokens at each position (or only at ``positions``, e.g. ``mask_positions``)."""
        source = None
        if self.source_ids is not None:
            source = display_tokens(self.source_ids.tolist(), self.tokenizer)
        return top_tokens(
            self.logits,
            k,
            token_ids=self.token_ids,
            target_ids=self.target_ids,
            tokenizer=self.tokenizer,
            positions=positions,
            source_tokens=source,
            generated_text=self.generated_text,
            meta=dict(self.meta),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the logits: ``.safetensors`` (with ids and metadata, see :meth:`load`) or ``.npy`` (the array).

        Returns:
            The path written.
        """
        from ..io.atomic import atomic_file
        from ..io.formats import format_of

        fmt = format_of(path, {".safetensors": "safetensors", ".npy": "npy"}, what="logits")
        with atomic_file(path) as tmp:  # complete or not at all
            self._write(os.fspath(tmp), fmt == "npy")
        return Path(path)

    def _write(self, path: str, npy: bool) -> None:
        logits = self.logits.detach().cpu().contiguous()
        if npy:
            with open(path, "wb") as fh:  # a file object: np.save would add ".npy" to the temporary name
                np.save(fh, logits.float().numpy())
        else:
            from safetensors.torch import save_file

            tensors = {"logits": logits, "token_ids": torch.from_numpy(self.token_ids)}
            tensors["target_ids"] = torch.from_numpy(self.target_ids)
            tensors["mask_positions"] = torch.from_numpy(self.mask_positions)
            for name in ("source_ids", "generated_ids"):
                if getattr(self, name) is not None:
                    tensors[name] = torch.from_numpy(getattr(self, name))
            meta = {"tokens": self.tokens, "generated_text": self.generated_text, "meta": self.meta}
            save_file(tensors, path, metadata={"logitscope": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike, tokenizer=None) -> LogitsResult:
        """Read a ``.safetensors`` file written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt") as f:
            info = json.loads((f.metadata() or {}).get("logitscope", "null") or "null")
            if info is None:
                raise InputError(f"{os.fspath(path)!r} was not written by LogitsResult.save")
            t = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        arrays = {k: v.numpy() for k, v in t.items() if k != "logits"}
        return cls(
            logits=t["logits"],
            tokens=info["tokens"],
            generated_text=info["generated_text"],
            meta=info["meta"],
            tokenizer=tokenizer,
            **arrays,
        )


def run_logits(
    scope,
    inputs,
    *,
    target=None,
    generate: int | None = None,
    batch_size: int = 8,
    truncate: bool = False,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype | None = torch.float32,
):
    """Implementation of :meth:`logitscope.Scope.logits` (see there)."""
    parts = scope.require_head()
    if generate is not None:
        if target is not None:
            raise InputError("give target= or generate=, not both")
        if parts.kind == "masked":
            raise InputError("masked LMs do not generate: generate= works with causal and encoder-decoder models")
        if isinstance(generate, np.integer):
            generate = int(generate)
        if not isinstance(generate, int) or isinstance(generate, bool) or generate < 1:
            raise InputError(f"generate= must be a positive whole number of tokens, not {generate!r}")
    single, encs = encode_all(
        inputs,
        kind=parts.kind,
        tokenizer=scope.tokenizer,
        config=scope.model.config,
        vocab_size=parts.vocab_size,
        target=target,
        truncate=truncate,
    )

    def finish(z: torch.Tensor) -> torch.Tensor:
        """One copy of the wanted rows, so no result keeps a whole batch's (B, T, V) logits alive."""
        check_finite(z, "the model's own logits")
        return z.to(device=device if device is not None else z.device, dtype=dtype or z.dtype, copy=True)

    if generate is not None:
        results = [_generate(scope, enc, generate, finish) for enc in encs]
    else:
        results = [None] * len(encs)
        for idx, batch in length_batches(encs, batch_size):
            kwargs = model_inputs(parts.kind, batch, scope.input_device, scope.pad_id)
            real = kwargs.get("decoder_attention_mask", kwargs["attention_mask"])  # (B, T) the blocks' sequence
            with torch.inference_mode(), pad_guard(parts.blocks, real):  # pad NaN never reaches real tokens
                z = scope.model(**kwargs).logits  # (B, T, V)
            for row, i in enumerate(idx):
                n = len(encs[i].lens_ids)
                results[i] = _result(scope, encs[i], finish(z[row, :n]))
            del z
    return results[0] if single else results


def _result(scope, enc: Encoded, logits: torch.Tensor, **extra) -> LogitsResult:
    tok, parts = scope.tokenizer, scope.parts
    ids = extra.pop("token_ids", enc.lens_ids)
    masks = []
    if parts.kind == "masked" and getattr(tok, "mask_token_id", None) is not None:
        masks = [i for i, t in enumerate(ids) if t == tok.mask_token_id]
    extra.setdefault("source_ids", enc.input_ids if enc.decoder_ids is not None else None)
    return LogitsResult(
        logits=logits,
        token_ids=ids,
        tokens=display_tokens(ids, tok),
        target_ids=extra.pop("target_ids", enc.target_ids),
        mask_positions=masks,
        meta={"model": scope.name, "model_type": parts.model_type, "kind": parts.kind},
        tokenizer=tok,
        **extra,
    )


def _eos_ids(model) -> set[int]:
    eos = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None)
        eos.update([value] if isinstance(value, int) else list(value or []))
    return eos


def _cache_kwarg(model) -> str:
    """The name of the KV-cache argument and output: ``cache`` from transformers 5.24 (which warns on
    the old name at every call), ``past_key_values`` before."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _generate(scope, enc: Encoded, n: int, finish) -> LogitsResult:
    """Greedy decoding on the raw logits (no generation-config processors), with the KV cache.

    Stops after ``n`` tokens or at an end-of-sequence token (which is kept).
    """
    model, kind = scope.model, scope.parts.kind
    dev = scope.input_device
    ids = torch.tensor([enc.input_ids], device=dev)
    mask = torch.ones_like(ids)
    fed = list(enc.decoder_ids if kind == "seq2seq" else enc.input_ids)  # tokens the steps read
    limit = context_limit(model.config)
    if limit is not None and len(fed) + n - 1 > limit:
        raise ContextLengthError(
            f"the input has {len(fed)} tokens; generating {n} more needs {len(fed) + n - 1} positions "
            f"but the model's context is {limit}"
        )
    eos, steps, gen = _eos_ids(model), [], []
    cache = _cache_kwarg(model)
    with torch.inference_mode():
        enc_out = model.get_encoder()(input_ids=ids, attention_mask=mask) if kind == "seq2seq" else None
        cur, past = torch.tensor([fed], device=dev), None
        for _ in range(n):
            if kind == "seq2seq":
                out = model(
                    encoder_outputs=enc_out,
                    attention_mask=mask,
                    decoder_input_ids=cur,
                    use_cache=True,
                    **{cache: past},
                )
            else:
                out = model(input_ids=cur, attention_mask=mask, use_cache=True, **{cache: past})
            z = out.logits[0, -1]
            steps.append(finish(z))
            gen.append(int(z.argmax()))
            if gen[-1] in eos:
                break
            past, cur = out.get(cache), torch.tensor([[gen[-1]]], device=dev)
            if kind != "seq2seq":
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    tok = scope.tokenizer
    text = tok.decode(gen, skip_special_tokens=True) if tok is not None else None
    return _result(
        scope,
        enc,
        torch.stack(steps),
        token_ids=[fed[-1], *gen[:-1]],
        target_ids=gen,
        source_ids=enc.input_ids,
        generated_ids=gen,
        generated_text=text,
    )
