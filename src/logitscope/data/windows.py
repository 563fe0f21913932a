"""Corpus input for evaluation: files → documents → one token stream → fixed-length windows.

Everything is a generator, so memory stays flat in the size of the corpus:

* :class:`~logitscope.data.corpus.Corpus` reads text, JSONL, JSON, Parquet, Arrow and CSV files,
  ``save_to_disk`` folders, directories of them and hub datasets (``hf:NAME[:CONFIG[:SPLIT]]``),
  and yields ``(text, ends_document)`` pieces;
* :func:`token_chunks` tokenises pieces in batches and appends the EOS token after every document;
* :func:`windows` cuts the stream into windows of ``seq_len + 1`` tokens that **overlap by one**:
  window ``k`` is ``stream[k*seq_len : k*seq_len + seq_len + 1]``, its first ``seq_len`` tokens are
  the model input and its last ``seq_len`` tokens the next-token targets. Every token of the stream
  but the first is scored exactly once, and nothing is padded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

from ..engine.inputs import context_limit
from ..errors import ContextLengthError, EmptyInputError, InputError
from .corpus import Corpus, looks_like_path

DEFAULT_SEQ_LEN = 1024
TOKENIZE_BATCH_BYTES = 1 << 18  # text handed to the tokenizer per call


def resolve_eos(tokenizer, config) -> int:
    """The EOS id that joins documents: the tokenizer's, else the config's; an error if neither."""
    for source in (tokenizer, config):
        eos = getattr(source, "eos_token_id", None)
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        if isinstance(eos, int) and eos >= 0:
            return eos
    raise InputError(
        "neither the tokenizer nor the model config defines eos_token_id, which joins documents; "
        "give a pre-tokenised stream (token ids) instead"
    )


def token_chunks(pieces: Iterable[tuple[str, bool]], tokenizer, eos_id: int) -> Iterator[np.ndarray]:
    """Tokenise ``(text, ends_document)`` pieces in batches; EOS follows every document.

    Yields int64 arrays whose concatenation is the token stream.
    """
    batch: list[tuple[str, bool]] = []
    size = 0

    def flush():
        ids = tokenizer([t for t, _ in batch], add_special_tokens=False, verbose=False)["input_ids"]
        parts = []
        for seq, (_, end) in zip(ids, batch):
            parts.append(np.asarray(seq, dtype=np.int64))
            if end:
                parts.append(np.array([eos_id], dtype=np.int64))
        return np.concatenate(parts)

    for text, end in pieces:
        batch.append((text, end))
        size += len(text)
        if size >= TOKENIZE_BATCH_BYTES or len(batch) >= 256:
            yield flush()
            batch, size = [], 0
    if batch:
        yield flush()


def resolve_seq_len(seq_len: int | None, config) -> int:
    """``seq_len`` (default 1024, capped at the model's context); too long for the model is an error."""
    limit = context_limit(config)
    if seq_len is None:
        return min(DEFAULT_SEQ_LEN, limit) if limit else DEFAULT_SEQ_LEN
    if limit is not None and seq_len > limit:
        raise ContextLengthError(f"seq_len {seq_len} exceeds the model's context length {limit}")
    return int(seq_len)


def windows(chunks: Iterable[np.ndarray], seq_len: int, max_tokens: int | None = None) -> Iterator[np.ndarray]:
    """Cut a token stream into windows of ``seq_len + 1`` tokens overlapping by one.

    Each window scores ``len(window) - 1`` tokens. The last window may be shorter (at least two
    tokens); with ``max_tokens`` the stream stops after exactly that many scored tokens (or at its
    end, if shorter), cutting the last window as needed.
    """
    if seq_len < 1:
        raise InputError("seq_len must be at least 1")
    if max_tokens is not None and max_tokens < 1:
        raise InputError("max_tokens must be at least 1")
    budget = max_tokens if max_tokens is not None else float("inf")
    buf = np.empty(0, dtype=np.int64)
    for chunk in chunks:
        buf = np.concatenate([buf, np.asarray(chunk, dtype=np.int64)]) if len(buf) else np.asarray(chunk, np.int64)
        start = 0
        while len(buf) - start >= seq_len + 1:
            n = int(min(seq_len, budget))
            yield buf[start : start + n + 1].copy()
            budget -= n
            if budget <= 0:
                return
            start += seq_len
        buf = buf[start:]
    if len(buf) >= 2:
        yield buf[: int(min(len(buf), budget + 1))].copy()


def window_batches(
    stream: Iterable[np.ndarray], batch_size: int, *, vocab_size: int, owns=None
) -> Iterator[list[tuple[int, np.ndarray]]]:
    """Batches of equal-length windows, each window with its index in ``stream``.

    A batch holds at most ``batch_size`` windows; a window of another length (the short last
    one) starts a new batch, so nothing is padded. ``owns(i)``: keep only the windows this
    process owns (torchrun sharding, :meth:`~logitscope.data.distributed.DistContext.owns`).

    Raises:
        InputError: a window holds a token id outside ``0 .. vocab_size - 1``.
    """
    batch: list[tuple[int, np.ndarray]] = []
    for i, w in enumerate(stream):
        if owns is not None and not owns(i):
            continue
        if w.max() >= vocab_size or w.min() < 0:
            raise InputError(f"token ids outside the vocabulary (size {vocab_size}) in window {i}")
        if batch and len(batch[0][1]) != len(w):
            yield batch
            batch = []
        batch.append((i, w))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def token_stream(
    data, tokenizer, config, *, text_field: str = "text", encoding_errors: str = "strict"
) -> tuple[Iterator[np.ndarray], Corpus | None]:
    """Turn any supported ``data`` into token chunks, plus the :class:`Corpus` when reading files.

    ``data`` is a :class:`Corpus`; a path (``os.PathLike``: a file or folder, see
    :mod:`logitscope.data.corpus`); a ``str`` that :func:`~logitscope.data.corpus.looks_like_path` (it
    exists, starts with ``hf:``, or has no whitespace and a corpus suffix or a path separator;
    such a path that does not exist is an :class:`InputError`, never scored as text); any other
    ``str`` (one document's text); an iterable of ``str`` (documents); a 1-D integer
    tensor/array or iterable of ints (a ready token stream, used as is); or an iterable of id
    lists (tokenised documents, joined with EOS). Bytes are refused.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"data is {type(data).__name__}: decode it to text, or give a path or token ids")
    if data is None or isinstance(data, (int, float, dict)):
        raise InputError(f"data must be a path, text, a list of texts or token ids, not {type(data).__name__}")
    if isinstance(data, str) and looks_like_path(data):
        data = Corpus(data, text_field=text_field, encoding_errors=encoding_errors)
    elif isinstance(data, os.PathLike):
        data = Corpus(data, text_field=text_field, encoding_errors=encoding_errors)
    if isinstance(data, Corpus):
        return token_chunks(data, _need(tokenizer), resolve_eos(tokenizer, config)), data
    if isinstance(data, str):
        data = [data]
    if hasattr(data, "detach"):  # torch tensor
        data = data.detach().cpu().numpy()
    if isinstance(data, np.ndarray):
        if data.ndim != 1 or not np.issubdtype(data.dtype, np.integer):
            raise InputError(f"a token stream must be a 1-D integer array, got shape {data.shape} {data.dtype}")
        return iter([data.astype(np.int64)]), None
    try:
        it = iter(data)
    except TypeError:
        raise InputError(
            f"data must be a path, text, a list of texts or token ids, not {type(data).__name__}"
        ) from None
    try:
        first = next(it)
    except StopIteration:
        raise EmptyInputError("no documents given") from None
    rest = _chain(first, it)
    if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
        return iter([_ints(rest)]), None
    if isinstance(first, str):
        return token_chunks(_texts(rest), _need(tokenizer), resolve_eos(tokenizer, config)), None
    if isinstance(first, (list, tuple, np.ndarray)) or hasattr(first, "detach"):
        return _id_docs(rest, resolve_eos(tokenizer, config)), None
    raise InputError(f"data items must be texts, token ids or lists of token ids, not {type(first).__name__}")


def _ints(items) -> np.ndarray:
    out = list(items)
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in out):
        raise InputError("a token stream must hold only integers")
    return np.asarray(out, dtype=np.int64)


def _texts(items) -> Iterator[tuple[str, bool]]:
    for n, t in enumerate(items):
        if not isinstance(t, str):
            raise InputError(f"document {n} is {type(t).__name__}, not text")
        yield t, True


def _id_docs(items, eos: int) -> Iterator[np.ndarray]:
    for n, d in enumerate(items):
        arr = np.asarray(d.detach().cpu().numpy() if hasattr(d, "detach") else d)
        if arr.size and (arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer)):
            raise InputError(f"document {n} must be a list of token ids, got {arr.dtype} values")
        yield np.concatenate([arr.astype(np.int64).reshape(-1), [eos]])


def _chain(first, it):
    yield first
    yield from it


def _need(tokenizer):
    if tokenizer is None:
        raise InputError("text input needs a tokenizer: pass tokenizer= to Scope, or give token ids")
    return tokenizer


def token_byte_lengths(tokenizer, vocab_size: int) -> np.ndarray:
    """UTF-8 bytes of text each token id stands for, (vocab_size,) int64; special tokens count 0.

    Byte-level BPE pieces (GPT-2 style, one character per byte) and SentencePiece byte-fallback
    pieces (``<0xE2>``) count exactly even when they hold part of a character; a SentencePiece
    piece's ``▁`` counts as its space.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    byte_chars = set(ByteLevel.alphabet())  # the 256 characters byte-level BPE uses, one per byte
    n = min(vocab_size, len(tokenizer))
    texts = tokenizer.batch_decode(
        [[i] for i in range(n)], skip_special_tokens=True, clean_up_tokenization_spaces=False
    )
    pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
    special = set(tokenizer.all_special_ids)
    out = np.zeros(vocab_size, dtype=np.int64)
    for i, (text, piece) in enumerate(zip(texts, pieces)):
        if i in special or not isinstance(piece, str):
            continue
        if "\ufffd" in text and piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            out[i] = 1
        elif "\ufffd" in text and all(c in byte_chars for c in piece):
            out[i] = len(piece)
        else:
            out[i] = len(text.encode("utf-8")) + (piece.startswith("\u2581") and not text.startswith(" "))
    return out
