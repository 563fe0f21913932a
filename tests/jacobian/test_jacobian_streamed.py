"""The J-lens fit on a streamed model (block-wise reverse VJPs) against the in-memory fit, and its memory.

The reference is the graph estimator on the same checkpoint loaded whole (itself checked against
brute-force autograd, closed forms and finite differences in test_jacobian_fit.py). The block-wise
walk replays exactly the graph's operations on exactly its block inputs, so the lens is equal bit
for bit (``torch.equal``), not merely close.
"""

from __future__ import annotations

import math
import weakref

import pytest
import tiny
import torch

import logitscope
from logitscope.arch.weights import frozen
from logitscope.jacobian.estimator import prompt_jacobians
from logitscope.jacobian.streamed import streamed_prompt_jacobians
from logitscope.stream import streamer as streamer_module


def _prompts(n: int, lengths=(20, 23, 26, 21, 30, 19), seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, tiny.V, (lengths[i % len(lengths)],), generator=g).tolist() for i in range(n)]


def _save(path, name: str = "llama", n_layers: int | None = None):
    model = tiny.build(name, **({} if n_layers is None else {"num_hidden_layers": n_layers}))
    model.config.bos_token_id = 0
    model.save_pretrained(path, max_shard_size="20KB")  # several shards and an index


def _equal(a, b):
    assert a.source_layers == b.source_layers and a.n_prompts == b.n_prompts
    for layer in a.source_layers:
        assert torch.equal(a.J[layer], b.J[layer]), (layer, (a.J[layer] - b.J[layer]).abs().max())
    assert a.J[a.source_layers[0]].abs().max() > 0.1  # a real, non-trivial Jacobian


@pytest.mark.parametrize("name", ["llama", "gpt2", "qwen2"])
def test_streamed_fit_equals_in_memory_fit(tmp_path, name):
    _save(tmp_path, name)
    ref = logitscope.load(tmp_path, device="cpu")
    scope = logitscope.load(tmp_path, device="cpu", device_map="stream")
    prompts = _prompts(3)
    seen = []
    got = scope.fit_jacobian_lens(prompts, skip_first=4, dim_batch=5, progress=seen.append)  # 5 does not divide 32
    _equal(got, ref.fit_jacobian_lens(prompts, skip_first=4, dim_batch=5))
    assert [r["reverse_passes"] for r in seen] == [1, 1, 1]  # all 7 cotangent groups in one pass
    some = dict(source_layers=[0], target_layer=1, skip_first=3, dim_batch=8)
    _equal(scope.fit_jacobian_lens(prompts, **some), ref.fit_jacobian_lens(prompts, **some))
    assert all(p.is_meta for p in scope.parts.blocks.parameters())  # every block released


def test_budget_splits_the_groups_over_passes_with_the_same_lens(tmp_path):
    """60 KB holds one block and no cotangent group beside it: one group per reverse pass, no prefetch."""
    _save(tmp_path)
    ref = logitscope.load(tmp_path, device="cpu")
    scope = logitscope.load(tmp_path, device="cpu", max_memory="60KB")
    streamer = scope.model._logitscope_streamer
    assert streamer is not None and not streamer.prefetch
    prompts = _prompts(2)
    seen = []
    got = scope.fit_jacobian_lens(prompts, skip_first=4, dim_batch=8, progress=seen.append)
    _equal(got, ref.fit_jacobian_lens(prompts, skip_first=4, dim_batch=8))
    assert [r["reverse_passes"] for r in seen] == [4, 4]  # ceil(32 / 8) groups, one a pass


def _probe(streamer):
    """Hooks recording, at every block call, how many streamed blocks' weights are alive (installed,
    or kept by an autograd graph) and how many blocks the streamer holds (installed or read ahead)."""
    alive: list[weakref.ref] = []
    samples: list[tuple[int, int]] = []
    set_param = streamer_module._set_param

    def tracking(block, path, value):
        if not value.is_meta and path == next(iter(streamer.keys[0])):  # one weight per block load
            alive.append(weakref.ref(value))
        set_param(block, path, value)

    def sample(*_):
        samples.append((sum(r() is not None for r in alive), len(streamer.in_memory)))

    handles = [
        h for b in streamer.blocks for h in (b.register_forward_pre_hook(sample), b.register_forward_hook(sample))
    ]
    return tracking, samples, handles


@pytest.mark.parametrize("per_pass", [None, 3])
def test_memory_stays_bounded_and_blocks_load_once_a_pass(tmp_path, monkeypatch, per_pass):
    """6 blocks, sources 1 and 3, target 4: at most one block's weights alive at any block call (two
    held with the one read ahead), and block loads = the forward's 4 (blocks 0..3) + 3 a reverse
    pass (blocks 2..4). The graph estimator on the same streamed model keeps blocks 2..4 alive."""
    _save(tmp_path, n_layers=6)
    ref = logitscope.load(tmp_path, device="cpu")
    scope = logitscope.load(tmp_path, device="cpu", device_map="stream")
    streamer = scope.model._logitscope_streamer
    scope.require_head()  # the pending self-check: a pass of its own, before counting
    ids = [0, *_prompts(1, lengths=(21,))[0]]
    tracking, samples, handles = _probe(streamer)
    monkeypatch.setattr(streamer_module, "_set_param", tracking)
    stats = {}
    before = streamer.loads
    with frozen(scope.model):
        J = streamed_prompt_jacobians(scope, ids, [1, 3], 4, dim_batch=4, skip_first=4, per_pass=per_pass, stats=stats)
    loads = streamer.loads - before
    passes = 1 if per_pass is None else math.ceil(8 / per_pass)  # 32 / 4 = 8 groups
    assert stats["passes"] == passes
    assert loads == 4 + passes * 3
    assert max(a for a, _ in samples) == 1 and max(h for _, h in samples) <= 2
    assert len(samples) == 2 * (4 + passes * 3)  # every block call seen: 4 forward, 3 a pass
    with frozen(ref.model):
        want = prompt_jacobians(ref, ids, [1, 3], 4, dim_batch=4, skip_first=4)
    assert all(torch.equal(J[layer], want[layer]) for layer in (1, 3))
    samples.clear()
    with frozen(scope.model):  # the probe is real: one graph over the blocks holds them all
        prompt_jacobians(scope, ids, [1, 3], 4, dim_batch=4, skip_first=4)
    assert max(a for a, _ in samples) >= 3
    for h in handles:
        h.remove()


def test_cli_fit_jlens_streams(tiny_lm_dir, tmp_path):
    from typer.testing import CliRunner

    from logitscope.cli import app
    from logitscope.jacobian import JacobianLens

    (tmp_path / "c.txt").write_text(tiny.TEXT * 2)
    fit = ["--data", tmp_path / "c.txt", "--max-seq-len", "20", "--skip-first", "4", "--device", "cpu"]
    runner = CliRunner()
    out = tmp_path / "s.pt"
    res = runner.invoke(app, [str(a) for a in ["fit-jlens", tiny_lm_dir, *fit, "--out", out, "--device-map", "stream"]])
    assert res.exit_code == 0, res.output
    ref = logitscope.load(tiny_lm_dir, device="cpu").fit_jacobian_lens(
        str(tmp_path / "c.txt"), max_seq_len=20, skip_first=4
    )
    lens = JacobianLens.load(out)
    assert lens.n_prompts == ref.n_prompts > 1
    for layer in ref.source_layers:
        assert torch.equal(lens.J[layer], ref.J[layer].half().float())
    bad = runner.invoke(app, [str(a) for a in ["fit-jlens", tiny_lm_dir, *fit, "--out", out, "--max-memory", "1KB"]])
    assert bad.exit_code == 2 and "--max-memory" in bad.output


def test_streamed_fit_peak_memory_is_bounded_by_the_block_size(tmp_path):
    """8 blocks of ~22 MB, every block below the last a source: the fit grows the process by two
    blocks (the one recomputing, the one read ahead) and what the estimate itself needs, not by
    the model (the graph estimator on the same streamed model: ~220 MB, measured).

    What the estimate needs, each term from the shapes: the cotangents of one pass (d × T × d
    floats: every group, no budget), the fit's float64 running sums and this prompt's float32
    Jacobians (n_sources × d × d each), the block inputs (B × T × d per block walked) and one
    block's recompute at batch B (graph + backward temporaries: ~2 × (10 d + 5 ffn) floats a
    token). Measured: 108-110 MB against this 131 MB bound (a full-suite run before the streamer
    trimmed the heap between blocks: 124 MB)."""
    from peak_rss import BLOCK_BYTES as block
    from peak_rss import FFN, LAYERS, WIDTH, save_blocky_llama, streamed_growth

    save_blocky_llama(tmp_path)
    T, B, d, n_sources = 20, 4, WIDTH, LAYERS - 1
    job = f"""
        seen = []
        lens = scope.fit_jacobian_lens([list(range(1, {T}))], skip_first=4, dim_batch={B}, progress=seen.append)
        result = dict(passes=seen[-1]["reverse_passes"])
    """
    m = streamed_growth(tmp_path, job)
    grown = m["grown"]
    assert m["passes"] == 1
    estimate = 4 * d * T * d + n_sources * d * d * (8 + 4) + n_sources * 4 * B * T * d
    estimate += 2 * 4 * B * T * (10 * d + 5 * FFN)
    bound = 2 * block + estimate + 32 * 2**20
    assert grown <= bound, (grown / 2**20, bound / 2**20, block / 2**20)
    assert LAYERS * block > bound  # the bound is below what the whole model takes
