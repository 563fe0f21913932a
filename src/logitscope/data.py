"""Corpus input for evaluation: files → documents → one token stream → fixed-length windows.

Everything is a generator, so memory stays flat in the size of the corpus:

* :func:`read_pieces` reads a text file, a JSONL file (one ``{"text": ...}`` object per line) or a
  directory of them (sorted, recursive) and yields ``(text, ends_document)`` pieces;
* :func:`token_chunks` tokenises pieces in batches and appends the EOS token after every document;
* :func:`windows` cuts the stream into windows of ``seq_len + 1`` tokens that **overlap by one**:
  window ``k`` is ``stream[k*seq_len : k*seq_len + seq_len + 1]``, its first ``seq_len`` tokens are
  the model input and its last ``seq_len`` tokens the next-token targets. Every token of the stream
  but the first is scored exactly once, and nothing is padded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .errors import ContextLengthError, EmptyInputError, InputError
from .inputs import context_limit

DEFAULT_SEQ_LEN = 1024
TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PIECE_BYTES = 1 << 18  # a plain-text file is tokenised in pieces of about this size
TOKENIZE_BATCH_BYTES = 1 << 18  # text handed to the tokenizer per call


class Corpus:
    """The documents of a text file, a JSONL file, or a directory of them.

    Iterating yields ``(text, ends_document)`` pieces (see :func:`read_pieces`) and advances
    :attr:`bytes_read`, so a progress bar can show ``bytes_read / total_bytes``.

    Args:
        path: a ``.txt``/``.text``/``.md`` file (one document), a ``.jsonl``/``.ndjson`` file (one
            document per line, in ``text_field``), or a directory searched recursively for both.
        text_field: the JSON key holding a document's text.
    """

    def __init__(self, path: str | os.PathLike, *, text_field: str = "text"):
        self.path = Path(path).expanduser()
        self.text_field = text_field
        self.files = list_files(self.path)
        self.total_bytes = sum(f.stat().st_size for f in self.files)
        self.bytes_read = 0

    def __iter__(self) -> Iterator[tuple[str, bool]]:
        self.bytes_read = 0
        for file in self.files:
            for text, end, n_bytes in read_pieces(file, text_field=self.text_field):
                self.bytes_read += n_bytes
                yield text, end

    def fraction(self) -> float:
        """Share of the corpus's bytes read so far."""
        return self.bytes_read / self.total_bytes if self.total_bytes else 1.0

    def __repr__(self) -> str:
        return f"Corpus({str(self.path)!r}, files={len(self.files)}, bytes={self.total_bytes})"


def list_files(path: Path) -> list[Path]:
    """The corpus files under ``path`` (itself if a file), sorted for a reproducible order."""
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES + JSONL_SUFFIXES))
    if not files:
        raise EmptyInputError(f"no {'/'.join(TEXT_SUFFIXES + JSONL_SUFFIXES)} files under {path}")
    return files


def read_pieces(file: Path, *, text_field: str = "text") -> Iterator[tuple[str, bool, int]]:
    """Yield ``(text, ends_document, n_bytes_read)`` from one file.

    A JSONL file yields one piece per non-blank line (a whole document). A plain-text file is one
    document, read in pieces of about :data:`PIECE_BYTES` cut at line ends so memory stays flat
    (tokenising at a cut may differ from tokenising the whole file at once by a token or two).
    """
    is_jsonl = file.name.endswith(JSONL_SUFFIXES)
    with open(file, "rb") as fh:
        if is_jsonl:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)[text_field]
                except (json.JSONDecodeError, TypeError, KeyError):
                    raise InputError(f"{file}:{lineno}: expected a JSON object with a {text_field!r} field") from None
                if not isinstance(text, str):
                    raise InputError(f"{file}:{lineno}: the {text_field!r} field is not a string")
                yield text, True, len(line)
            return
        buf, size = [], 0
        for line in fh:
            buf.append(line)
            size += len(line)
            if size >= PIECE_BYTES:
                yield b"".join(buf).decode("utf-8", errors="replace"), False, size
                buf, size = [], 0
        yield b"".join(buf).decode("utf-8", errors="replace"), True, size


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


def token_stream(data, tokenizer, config) -> tuple[Iterator[np.ndarray], Corpus | None]:
    """Turn any supported ``data`` into token chunks, plus the :class:`Corpus` when reading files.

    ``data`` is a path (``os.PathLike``, or a ``str`` naming an existing file or directory) or
    :class:`Corpus`; any other ``str`` (one document's text); an
    iterable of ``str`` (documents); a 1-D integer tensor/array or iterable of ints (a ready token
    stream, used as is); or an iterable of id lists (tokenised documents, joined with EOS).
    """
    if isinstance(data, str) and "\n" not in data and len(data) < 4096 and os.path.exists(data):
        data = Path(data)  # a string naming an existing file or directory is read as a path
    corpus = Corpus(data) if isinstance(data, os.PathLike) else data if isinstance(data, Corpus) else None
    if corpus is not None:
        return token_chunks(corpus, _need(tokenizer), resolve_eos(tokenizer, config)), corpus
    if isinstance(data, str):
        data = [data]
    if hasattr(data, "detach"):  # torch tensor
        data = data.detach().cpu().numpy()
    if isinstance(data, np.ndarray):
        if data.ndim != 1 or not np.issubdtype(data.dtype, np.integer):
            raise InputError(f"a token stream must be a 1-D integer array, got shape {data.shape} {data.dtype}")
        return iter([data.astype(np.int64)]), None
    it = iter(data)
    try:
        first = next(it)
    except StopIteration:
        raise EmptyInputError("no documents given") from None
    rest = _chain(first, it)
    if isinstance(first, (int, np.integer)):
        return iter([np.fromiter(rest, dtype=np.int64)]), None
    if isinstance(first, str):
        return token_chunks(((t, True) for t in rest), _need(tokenizer), resolve_eos(tokenizer, config)), None
    eos = resolve_eos(tokenizer, config)
    return (np.concatenate([np.asarray(d, dtype=np.int64).reshape(-1), [eos]]) for d in rest), None


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
