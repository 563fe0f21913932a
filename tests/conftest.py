"""Shared fixtures: a tiny saved GPT-2 with a real tokenizer, and hand-built LensResults.

Add fixtures here; do not remove others'.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# tests/ mirrors the package (tests/engine/, tests/lens/, ...); helpers are shared by module name
# (``import tiny``, ``from test_lens_exact import truncated``), so every test folder is importable.
for _folder in sorted(p for p in Path(__file__).parent.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

# Awkward tokens on purpose: whitespace, empty, special, CSV/JSON/HTML metacharacters, NaN-like text.
AWKWARD = [
    "The",
    " quick",
    " brown",
    "\n",
    " fox",
    "",
    "<|endoftext|>",
    "NaN",
    "a,b",
    '"q"',
    " null",
    "\t",
    " <b>",
    "é",
]


def fake_result(S: int = 5, P: int = 7, k: int = 3, K: int = 2, seed: int = 0, target_all: bool = False):
    """A LensResult built by hand (no model): consistent shapes, a NaN target at the last position.

    Args:
        S, P, k, K: streams, positions, top-k, tracked tokens.
        seed: numpy seed.
        target_all: give every position a target (else the last has none, as a causal LM does).
    """
    from logitscope.lens.result import LensResult

    rng = np.random.default_rng(seed)
    vocab = dict(enumerate(AWKWARD + [f"w{i}" for i in range(40)]))
    V = len(vocab)
    token_ids = np.array([i % len(AWKWARD) for i in range(P)])
    target_ids = np.append(token_ids[1:], token_ids[0] if target_all else -1)
    logits = rng.normal(0, 1 + np.arange(S)[:, None, None], (S, P, V))  # sharper with depth
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    probs = np.exp(logp)
    order = np.argsort(-probs, -1)
    ranks = np.argsort(order, -1)
    entropy = -(probs * logp).sum(-1)
    kl = (probs[-1:] * (logp[-1:] - logp)).sum(-1)
    tgt = np.where(target_ids >= 0, target_ids, 0)
    pick = lambda a: np.take_along_axis(a, np.broadcast_to(tgt[None, :, None], (S, P, 1)), -1)[..., 0]  # noqa: E731
    has = target_ids[None, :] >= 0
    tracked = np.array([1, 4][:K], dtype=np.int64)
    return LensResult(
        tokens=[vocab[int(i)] for i in token_ids],
        token_ids=token_ids,
        layer_names=["embed"] + [str(i) for i in range(1, S)],
        layers=np.arange(S),
        entropy=entropy,
        kl_to_final=kl,
        top_ids=order[..., :k],
        top_probs=np.take_along_axis(probs, order[..., :k], -1),
        target_ids=target_ids,
        target_prob=np.where(has, pick(probs), np.nan),
        target_logprob=np.where(has, pick(logp), np.nan),
        target_rank=np.where(has, pick(ranks), -1),
        tracked_ids=tracked,
        tracked_probs=np.moveaxis(probs[..., tracked], -1, 0),
        tracked_ranks=np.moveaxis(ranks[..., tracked], -1, 0),
        vocab=vocab,
        meta={"model": "fake", "model_type": "gpt2", "kind": "causal", "n_blocks": S - 1},
    )


@pytest.fixture
def make_result():
    """The :func:`fake_result` factory."""
    return fake_result


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """A directory holding a tiny GPT-2 (3 blocks) and its byte-level BPE tokenizer, loadable by path."""
    import tiny

    path = tmp_path_factory.mktemp("tiny_gpt2")
    tiny.saved_gpt2(path)
    return path
