"""Turn user input (text, ids, tensors; prompt + optional target) into token id sequences.

One :class:`Encoded` per input. For causal and masked LMs the lens positions are the input
tokens; for encoder-decoder models they are the decoder tokens: the decoder start token, then the
target (teacher-forced) if one is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..arch.registry import context_limit, decoder_start
from ..errors import ContextLengthError, EmptyInputError, InputError


@dataclass
class Encoded:
    """One input, tokenised.

    Attributes:
        input_ids: (n_in,) the model input (the encoder input for encoder-decoder models).
        decoder_ids: (n_dec,) decoder input for encoder-decoder models, else ``None``.
        target_ids: (n_positions,) token scored at each lens position, -1 for none.
    """

    input_ids: list[int]
    decoder_ids: list[int] | None
    target_ids: list[int]

    @property
    def lens_ids(self) -> list[int]:
        """Token ids at the lens positions."""
        return self.decoder_ids if self.decoder_ids is not None else self.input_ids


BYTES = (bytes, bytearray, memoryview)


def _is_id(i) -> bool:
    return isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))


def _refuse_bytes(x, what: str = "input") -> None:
    if isinstance(x, BYTES):
        raise InputError(
            f"the {what} is {type(x).__name__}, not text or token ids: decode it first (e.g. data.decode('utf-8'))"
        )


def is_single(x) -> bool:
    """A single input (str, flat list of ints, 1-D tensor) rather than a list of them."""
    if isinstance(x, str):
        return True
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return x.ndim <= 1
    return isinstance(x, Sequence) and not isinstance(x, BYTES) and (len(x) == 0 or _is_id(x[0]))


def to_ids(x, tokenizer, *, special_tokens: bool = True) -> list[int]:
    """Token ids of a string (via the tokenizer), a list of ints or a 1-D LongTensor.

    Bytes are refused (they are not token ids, and their encoding is unknown).
    """
    _refuse_bytes(x)
    if isinstance(x, str):
        if not x:  # checked here: special tokens would make "" a non-empty input for some tokenizers
            raise EmptyInputError("the text is empty")
        if tokenizer is None:
            raise InputError("text input needs a tokenizer: pass tokenizer= to Scope, or give token ids")
        # verbose=False: over-long inputs get our ContextLengthError (or --truncate), not a warning too
        return list(tokenizer(x, add_special_tokens=special_tokens, verbose=False)["input_ids"])
    if isinstance(x, torch.Tensor):
        if x.dim() != 1 or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise InputError(f"token ids must be a 1-D integer tensor, got shape {tuple(x.shape)} {x.dtype}")
        return [int(i) for i in x.tolist()]
    if isinstance(x, np.ndarray):
        if x.ndim != 1 or x.dtype.kind not in "iu":
            raise InputError(f"token ids must be a 1-D integer array, got shape {x.shape} {x.dtype}")
        return [int(i) for i in x.tolist()]
    if isinstance(x, Sequence) and all(_is_id(i) for i in x):
        return [int(i) for i in x]
    raise InputError(f"expected text, a list of token ids or a 1-D LongTensor, got {_describe(x)}")


def _describe(x) -> str:
    if isinstance(x, (list, tuple)) and x:
        return f"a {type(x).__name__} holding {type(x[0]).__name__}"
    return "None" if x is None else type(x).__name__


def check_top_k(top_k, vocab_size: int, name: str = "top_k") -> int:
    """``top_k`` as an int in ``1 .. vocab_size``; anything else is an :class:`InputError`."""
    if not _is_id(top_k) or not 1 <= top_k <= vocab_size:
        raise InputError(f"{name} must be an integer between 1 and the vocabulary size ({vocab_size}), not {top_k!r}")
    return int(top_k)


def _check_length(ids: list[int], limit: int | None, truncate: bool, what: str) -> list[int]:
    if not ids:
        raise EmptyInputError(f"the {what} is empty: it has no tokens")
    if limit is not None and len(ids) > limit:
        if truncate:
            return ids[:limit]
        raise ContextLengthError(
            f"the {what} has {len(ids)} tokens but the model's context is {limit}; "
            "shorten it or pass truncate=True (keeps the first tokens; with a target, the prompt's last)"
        )
    return ids


def check_vocab(ids: list[int], vocab_size: int) -> None:
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise InputError(f"token ids {bad[:5]} are outside the vocabulary (size {vocab_size})")


def encode(x, *, kind: str, tokenizer, config, vocab_size: int, target=None, truncate: bool = False) -> Encoded:
    """Tokenise one input (and optional target continuation) for the lens.

    Targets: causal LMs score the next input token at every position, or with ``target`` only
    the positions that predict the continuation; encoder-decoder models score the decoder's
    next token; masked LMs score the token at the same position (what the MLM reconstructs).
    The truncation rule (one rule, documented in docs/lens_output.md): ``truncate`` keeps the
    first tokens of an input; with a ``target`` it keeps the prompt's last tokens instead, so
    the continuation follows its real context. A target is never cut.
    """
    limit = context_limit(config)
    if isinstance(target, str) and not target:
        raise EmptyInputError("the target= text is empty: give the continuation to score, or leave target= out")
    ids = to_ids(x, tokenizer)
    if kind == "seq2seq":
        ids = _check_length(ids, limit, truncate, "input")
        start = decoder_start(config, ids)
        if start is None:
            raise InputError(
                f"this encoder-decoder model ({config.model_type}) names no decoder_start_token_id and has no "
                "rule for one: set model.config.decoder_start_token_id to the token its decoder starts from"
            )
        tgt = to_ids(target, tokenizer, special_tokens=False) if target is not None else []
        dec = _check_length([int(start), *tgt], limit, False, "target")  # never cut the scored text
        check_vocab(ids + dec, vocab_size)
        return Encoded(ids, dec, dec[1:] + [-1])
    if kind == "masked":
        if target is not None:
            raise InputError(
                "masked LMs have no continuation to score: target= works with causal and encoder-decoder models"
            )
        ids = _check_length(ids, limit, truncate, "input")
        check_vocab(ids, vocab_size)
        return Encoded(ids, None, list(ids))
    if target is None:
        ids = _check_length(ids, limit, truncate, "input")
        check_vocab(ids, vocab_size)
        return Encoded(ids, None, ids[1:] + [-1])
    cont = to_ids(target, tokenizer, special_tokens=False)
    if not cont:
        raise EmptyInputError("the target is empty: it has no tokens")
    if not ids:
        raise EmptyInputError("the input is empty: it has no tokens")
    if truncate and limit is not None and len(ids) + len(cont) > limit:
        if len(cont) >= limit:
            raise ContextLengthError(f"the target alone has {len(cont)} tokens; the model's context is {limit}")
        ids = ids[len(ids) + len(cont) - limit :]  # keep the prompt's last tokens; never cut the target
    full = _check_length(ids + cont, limit, False, "input plus target")
    check_vocab(full, vocab_size)
    n = len(ids)
    targets = [full[i + 1] if i + 1 >= n and i + 1 < len(full) else -1 for i in range(len(full))]
    return Encoded(full, None, targets)


def track_ids(track, tokenizer, vocab_size: int) -> list[int]:
    """Resolve ``track=`` items (single-token strings or ids) to token ids."""
    if track is None:
        return []
    _refuse_bytes(track, "track= value")
    if isinstance(track, (str, int, np.integer)) or (isinstance(track, torch.Tensor) and track.dim() == 0):
        track = [track]  # one token, not a sequence of characters
    if not isinstance(track, (Sequence, torch.Tensor, np.ndarray)):
        raise InputError(f"track= takes a token, a token id or a list of them, not {type(track).__name__}")
    out = []
    for item in track:
        if isinstance(item, np.integer):
            item = int(item)
        if isinstance(item, torch.Tensor) and item.dim() == 0:
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise InputError(f"track items must be single-token strings or token ids, got {item!r}")
        if isinstance(item, int):
            ids = [item]
        elif not item:
            raise EmptyInputError("a track= item is empty: give a single-token string such as ' the', or a token id")
        else:
            ids = to_ids(item, tokenizer, special_tokens=False)
        if len(ids) != 1:
            raise InputError(f"track item {item!r} is {len(ids)} tokens; each tracked item must be one token")
        check_vocab(ids, vocab_size)
        out.append(ids[0])
    return out


def display_tokens(ids: Sequence[int], tokenizer) -> list[str]:
    """Readable strings for token ids, decoded by the tokenizer itself (``Ġ``/``▁`` become spaces).

    A token holding part of a UTF-8 character shows its bytes (``<0xE4><0xBD>``), not "�"
    (:mod:`.token_bytes`): every table, plot, export and the viewer show these strings.
    """
    from .token_bytes import token_text

    if tokenizer is None:
        return [f"<{i}>" for i in ids]
    texts = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    out = []
    for text, piece in zip(texts, pieces):
        # SentencePiece decoding drops a word's leading space when the piece stands alone.
        if isinstance(piece, str) and piece.startswith("\u2581") and not text.startswith(" "):
            text = " " + text
        out.append(token_text(text, piece))
    return out


def encode_all(inputs, *, kind: str, tokenizer, config, vocab_size: int, target=None, truncate: bool = False):
    """Encode one input or a list of them, pairing each with its target.

    ``target`` is one continuation for all inputs, or (for a list of inputs) a list with one
    per input. Returns ``(single, encodings)``; ``single`` is ``True`` for one bare input.
    """
    _refuse_bytes(inputs)
    if (
        inputs is None
        or isinstance(inputs, (dict, set, int, float))
        or not (isinstance(inputs, (str, torch.Tensor, np.ndarray)) or isinstance(inputs, Iterable))
    ):
        raise InputError(
            f"expected text, token ids (a list of ints or a 1-D LongTensor) or a list of those, got {_describe(inputs)}"
        )
    if target is not None and not isinstance(target, (str, torch.Tensor, np.ndarray, list, tuple)):
        raise InputError(f"target= takes text, token ids or a list of them, not {_describe(target)}")
    single = is_single(inputs)
    items = [inputs] if single else list(inputs)
    if not items:
        raise EmptyInputError("no inputs given")
    if single or target is None or is_single(target):
        targets = [target] * len(items)
    else:
        targets = list(target)
        if len(targets) != len(items):
            raise InputError(f"{len(items)} inputs but {len(targets)} targets")
    encs = [
        encode(x, kind=kind, tokenizer=tokenizer, config=config, vocab_size=vocab_size, target=t, truncate=truncate)
        for x, t in zip(items, targets)
    ]
    return single, encs


def length_batches(encs: Sequence[Encoded], batch_size: int):
    """Yield ``(indices, encodings)`` batches, longest first (similar lengths share a batch, and an
    out-of-memory shows on the first one); callers restore input order with the indices."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    order = sorted(range(len(encs)), key=lambda i: -len(encs[i].lens_ids))
    for b0 in range(0, len(order), batch_size):
        idx = order[b0 : b0 + batch_size]
        yield idx, [encs[i] for i in idx]


def padding_id(tokenizer, config) -> int:
    """The id that right-padded batches (:func:`model_inputs`) are filled with: the tokenizer's pad
    token, else the config's, else 0."""
    for source in (tokenizer, config):
        pad = getattr(source, "pad_token_id", None)
        if isinstance(pad, int) and pad >= 0:
            return pad
    return 0


def model_inputs(kind: str, batch: Sequence[Encoded], device, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded model kwargs for a batch; right padding leaves every real token's result unchanged."""

    def pad(seqs: list[list[int]]):
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return ids.to(device), mask.to(device)

    ids, mask = pad([e.input_ids for e in batch])
    out = {"input_ids": ids, "attention_mask": mask}
    if kind == "seq2seq":
        out["decoder_input_ids"], out["decoder_attention_mask"] = pad([e.decoder_ids for e in batch])
    if kind != "masked":
        out["use_cache"] = False
    return out
