"""Prompts for a Jacobian-lens fit: texts, token-id lists or a corpus path → token ids, BOS first.

* a list of texts or of id lists: one prompt each, BOS forced, cut to ``max_seq_len`` tokens (the
  published estimator's rule);
* a corpus path (anything :class:`~logitscope.corpus.Corpus` reads): every document is cut into
  consecutive prompts of ``max_seq_len - 1`` tokens, each preceded by BOS, so a long text yields
  many prompts and nothing is read twice.

Prompts shorter than ``skip_first + 2`` tokens have no valid position; the fit skips them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..data.corpus import Corpus, looks_like_path
from ..engine.inputs import to_ids
from ..errors import InputError


def bos_id(scope) -> int | None:
    """The BOS token forced at the start of every prompt (the tokenizer's, else the config's)."""
    for source in (scope.tokenizer, scope.model.config):
        bos = getattr(source, "bos_token_id", None)
        if isinstance(bos, int) and bos >= 0:
            return bos
    return None


def with_bos(ids: list[int], bos: int | None, max_seq_len: int) -> list[int]:
    """``ids`` with ``bos`` in front (unless already there), cut to ``max_seq_len`` tokens."""
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids[:max_seq_len]


def is_corpus(prompts) -> bool:
    """A path (or ``Corpus``) rather than a list of prompts."""
    if isinstance(prompts, Corpus | os.PathLike):
        return True
    return isinstance(prompts, str) and (os.path.exists(prompts) or looks_like_path(prompts))


def iter_prompts(prompts, scope, max_seq_len: int) -> Iterator[list[int]]:
    """Token-id prompts (BOS first, at most ``max_seq_len`` tokens) in a fixed, reproducible order."""
    bos = bos_id(scope)
    vocab = scope.require_head().vocab_size
    if is_corpus(prompts):
        corpus = prompts if isinstance(prompts, Corpus) else Corpus(prompts)
        yield from _corpus_prompts(corpus, scope, bos, max_seq_len, vocab)
        return
    if isinstance(prompts, str):
        raise InputError("prompts= takes a list of texts or id lists, or a corpus path; wrap one text in a list")
    for item in prompts:
        ids = to_ids(item, scope.tokenizer, special_tokens=False)
        _check_vocab(ids, vocab)
        yield with_bos(ids, bos, max_seq_len)


def _corpus_prompts(corpus: Corpus, scope, bos, max_seq_len: int, vocab: int) -> Iterator[list[int]]:
    if scope.tokenizer is None:
        raise InputError("a corpus path needs a tokenizer to encode its text; give token-id lists instead")
    width = max_seq_len - (1 if bos is not None else 0)
    buf: list[int] = []
    for text, end in corpus:
        if text:
            buf.extend(scope.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        while len(buf) >= width:
            yield with_bos(buf[:width], bos, max_seq_len)
            del buf[:width]
        if end and buf:
            yield with_bos(buf, bos, max_seq_len)
            buf = []


def _check_vocab(ids: list[int], vocab: int) -> None:
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise InputError(f"token id {bad[0]} is outside the vocabulary (size {vocab})")
