"""The streamer's worker: it reads (and the first time scans) a block's pages before the block
computes, has the kernel read the head and the next pass's first block ahead, and the budget it
was loaded with sizes the batches. Results stay those of the in-memory model, bit for bit."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tiny

import logitscope
from logitscope.data.distributed import streamed_batch_size, window_bytes
from logitscope.stream.budget import parse_size

IDS = [3, 17, 5, 42, 8, 11, 60, 2, 9]


def _save(path, **kw):
    model = tiny.build("llama")
    model.config.tie_word_embeddings = False
    model.save_pretrained(path, **kw)
    return path


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("llama_prefetch"), max_shard_size="20KB")


def test_worker_scans_a_block_before_it_computes(tmp_path):
    from safetensors.torch import load_file, save_file

    _save(tmp_path, max_shard_size="1GB")
    weights = load_file(tmp_path / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"][0, 0] = float("inf")
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    scope = logitscope.load(tmp_path, device="cpu", device_map="stream")
    streamer = scope.model._logitscope_streamer
    tensors = streamer._fetch(1).result()  # what the prefetch thread hands the forward
    assert streamer.nonfinite == {"model.layers.1.mlp.up_proj.weight"}  # no forward has run
    assert streamer.loads == 0 and all(not t.is_meta for t in tensors.values())
    streamer.release()


def test_head_and_next_pass_are_read_ahead(llama_dir, monkeypatch):
    ref = logitscope.load(llama_dir, device="cpu")
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    streamer = scope.model._logitscope_streamer
    asked: list[list[str]] = []
    real = streamer.shards.advise
    monkeypatch.setattr(streamer.shards, "advise", lambda names: (asked.append(list(names)), real(names)))
    assert "lm_head.weight" in streamer.warm
    a = scope.lens(IDS)
    streamer.release()  # wait for the worker
    flat = [n for names in asked for n in names]
    assert "lm_head.weight" in flat and streamer.warm == []  # the head: once, during the first pass
    assert set(streamer.keys[0].values()) <= set(flat)  # block 0, for the next forward
    b = scope.lens([IDS, IDS[:5]])
    for got, want in ((a, ref.lens(IDS)), (b[1], ref.lens([IDS, IDS[:5]])[1])):
        for field in ("entropy", "kl_to_final", "top_ids", "top_probs", "target_logprob", "target_rank"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    assert streamer.loads == 2 * scope.n_layers  # the read-ahead installs nothing by itself
    assert sum("lm_head.weight" in names for names in asked) == 1


def test_budget_and_resident_bytes_size_the_batches(llama_dir):
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream", max_memory="300KB")
    streamer = scope.model._logitscope_streamer
    head = scope.parts.head.weight
    norm = scope.parts.final_norm.weight
    assert streamer.budget == parse_size("300KB")
    assert streamer.resident_bytes >= head.numel() * head.element_size() + norm.numel() * norm.element_size()
    chunk, T = scope.chunk_size, 8
    fixed = streamer.resident_bytes + (2 if streamer.prefetch else 1) * streamer.block_bytes
    fixed += 9.3 * chunk * scope.parts.vocab_size
    expect = max(1, int((streamer.budget - fixed) // window_bytes(scope, T)))
    assert streamed_batch_size(scope, T, chunk) == min(expect, 4096)


def test_blocks_larger_than_memory_leave_the_page_cache_after_use(llama_dir, monkeypatch):
    import logitscope.stream.build as build

    ref = logitscope.load(llama_dir, device="cpu")
    assert not logitscope.load(llama_dir, device="cpu", device_map="stream").model._logitscope_streamer.forget
    monkeypatch.setattr(build, "_available_memory", lambda: 1)  # a machine whose RAM the checkpoint exceeds
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    streamer = scope.model._logitscope_streamer
    assert streamer.forget
    dropped: list[str] = []
    real = streamer.shards.forget

    def slow_forget(names):  # a slow disk: the worker is still dropping pages when the lens returns
        time.sleep(0.05)
        dropped.extend(names)
        real(names)

    monkeypatch.setattr(streamer.shards, "forget", slow_forget)
    a = scope.lens(IDS)
    b = scope.lens(IDS)  # a second pass reads the dropped pages again
    streamer.release()  # waits for the worker's queued drops too
    every = [k for keys in streamer.keys for k in keys.values()]
    assert sorted(dropped) == sorted(every * 2)  # each block's tensors, once per pass, after its forward
    assert "lm_head.weight" not in dropped  # resident parts stay
    want = ref.lens(IDS)
    for got in (a, b):
        for field in ("entropy", "kl_to_final", "top_ids", "top_probs", "target_logprob", "target_rank"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
