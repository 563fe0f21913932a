"""Streamed models (weights read from disk per forward): corpus eval and tuned-lens training batch
their windows so that one pass over the disk serves many tokens, with the in-memory results.

Every comparison is against the same checkpoint loaded whole, run with the same windows per forward.
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch

import logitscope
from logitscope.data.distributed import streamed_batch_size, window_bytes
from logitscope.engine.kernel import default_chunk_rows

IDS = [3, 17, 5, 42, 8, 11, 60, 2, 9]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama_stream_batches")
    model = tiny.build("llama")
    model.config.tie_word_embeddings = False
    model.save_pretrained(path, max_shard_size="20KB")
    return path


def _data(n_windows: int, seq_len: int = 8) -> torch.Tensor:
    base = IDS * 3 + IDS[::-1] * 3
    reps = -(-(n_windows * seq_len + 1) // len(base))
    return torch.tensor((base * reps)[: n_windows * seq_len + 1])


def test_streamed_eval_auto_batch_is_one_disk_pass(llama_dir):
    """batch_size="auto" on a streamed model: the 12 windows go through in one forward (one read of
    every block, the self-check riding along), and the sums equal the in-memory run's."""
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    ref = logitscope.load(llama_dir, device="cpu")
    data = _data(12)
    a = scope.evaluate(data, seq_len=8, ci="stderr")
    assert a.meta["batch_size"] >= 12  # not the in-memory CPU cap of 8
    b = ref.evaluate(data, seq_len=8, batch_size=a.meta["batch_size"], ci="stderr")
    assert a.n_windows == 12
    np.testing.assert_array_equal(a.window_sums, b.window_sums)
    np.testing.assert_array_equal(a.ce, b.ce)
    assert not scope._check_pending
    assert scope.model._logitscope_streamer.loads == scope.n_layers  # one pass over the blocks for all


def test_streamed_batch_follows_the_budget(llama_dir):
    """A budget that holds only a few windows: that many per forward, one disk pass per batch."""
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    streamer = scope.model._logitscope_streamer
    V, T = scope.parts.vocab_size, 8  # scope.parts: require_head() would run the pending check alone
    chunk = scope.chunk_size
    per = window_bytes(scope, T)
    fixed = getattr(streamer, "resident_bytes", 0) + 2 * streamer.block_bytes + 9.3 * chunk * V
    streamer.budget = int(fixed + 3.5 * per)  # room for 3 windows
    assert streamed_batch_size(scope, T, chunk) == 3
    streamer.budget = int(fixed + 0.5 * per)  # not even one: still one at a time
    assert streamed_batch_size(scope, T, chunk) == 1
    streamer.budget = int(fixed + 3.5 * per)
    ev = scope.evaluate(_data(7), seq_len=T, batch_size="auto", ci="stderr")
    if ev.meta["chunk_rows"] == chunk:
        assert ev.meta["batch_size"] == 3
        assert streamer.loads == -(-ev.n_windows // 3) * scope.n_layers, ev.n_windows  # a pass per batch of 3
    ref = logitscope.load(llama_dir, device="cpu").evaluate(
        _data(7), seq_len=T, batch_size=ev.meta["batch_size"], ci="stderr"
    )
    np.testing.assert_array_equal(ev.window_sums, ref.window_sums)


def test_in_memory_batch_is_unchanged(llama_dir):
    ref = logitscope.load(llama_dir, device="cpu")
    assert streamed_batch_size(ref, 8, 64) is None
    assert ref.evaluate(_data(12), seq_len=8, ci="stderr").meta["batch_size"] <= 8


def test_streamed_tuned_training_reads_the_weights_once_a_step(llama_dir):
    """train_lens on a streamed model: each step's 6 windows in one forward (3 steps: 3 passes, the
    self-check riding along the first); the lens equals the in-memory one trained with the same
    windows per forward."""
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    ref = logitscope.load(llama_dir, device="cpu")
    data = _data(40)
    kw = dict(steps=3, tokens_per_step=48, seq_len=8, save_every=0)
    a = scope.train_lens(data, **kw)
    assert a.training_log["settings"]["batch_size"] == 6
    assert scope.model._logitscope_streamer.loads == 3 * scope.n_layers
    assert not scope._check_pending  # checked on the way, no pass of its own
    b = ref.train_lens(data, batch_size=6, **kw)
    for (na, pa), (nb, pb) in zip(a.translators.named_parameters(), b.translators.named_parameters()):
        assert na == nb
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert [s["kl"] for s in a.training_log["steps"]] == [s["kl"] for s in b.training_log["steps"]]
    assert ref.train_lens(data, **kw).training_log["settings"]["batch_size"] == 8  # in memory: as before


def test_chunk_rows_default_is_what_training_uses(llama_dir):
    ref = logitscope.load(llama_dir, device="cpu")
    assert default_chunk_rows(ref.parts.vocab_size) >= 8


def test_streamed_jacobian_fit_equals_in_memory(llama_dir):
    """fit_jacobian_lens on a streamed model: one forward (one disk pass) per prompt, its VJPs run
    on the graph that forward kept; the lens equals the in-memory fit exactly."""
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    ref = logitscope.load(llama_dir, device="cpu")
    prompts = [[1, *range(3, 25)], [1, *range(30, 52)]]
    a = scope.fit_jacobian_lens(prompts, skip_first=4, dim_batch=8)
    b = ref.fit_jacobian_lens(prompts, skip_first=4, dim_batch=8)
    assert sorted(a.J) == sorted(b.J) == list(range(scope.n_layers - 1))
    for layer in a.J:
        torch.testing.assert_close(a.J[layer], b.J[layer], rtol=0, atol=0)
    passes = scope.model._logitscope_streamer.loads // scope.n_layers
    assert passes <= len(prompts) + 1  # a pass per prompt (and at most one for the self-check)
