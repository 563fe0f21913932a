"""Blocks not in the page cache are read with O_DIRECT into reused buffers (stream/direct.py);
cached blocks are mapped. Either way the lens is the in-memory model's, bit for bit, and a buffer
is never refilled while a tensor still views it."""

from __future__ import annotations

import errno
import gc
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import logitscope
from logitscope.errors import CorruptWeightsError
from logitscope.stream import direct as direct_mod
from logitscope.stream.shards import Shards

IDS = [3, 17, 5, 42, 8, 11, 60, 2, 9, 120]
FIELDS = ("entropy", "kl_to_final", "top_ids", "top_probs", "target_logprob", "target_rank")


def _save(path, dtype=None, shard="300KB"):
    """A random Llama whose tensors span pages (64 KB and up: the headers' pages, which reading a
    header caches, hold a negligible part of any block), in several shards."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, vocab_size=128,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).eval()
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(path, max_shard_size=shard)
    return Path(path)


def _block_keys(folder) -> list[str]:
    return [n for n in Shards(folder).entries if ".layers." in n]


def drop_cache(folder) -> None:
    """Write the shards back and drop their pages; skip where the file system keeps them (tmpfs)."""
    for p in Path(folder).glob("*.safetensors"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if Shards(folder).resident(_block_keys(folder)) > 0.1:
        pytest.skip("this file system keeps the shards' pages cached")


def _reference(folder, *inputs, **kw):
    """The in-memory lens of each input; the model is dropped after (its weights may map the
    shards, and mapped pages cannot leave the page cache)."""
    ref = logitscope.load(folder, device="cpu", **kw)
    out = [ref.lens(x) for x in inputs]
    del ref
    gc.collect()
    return out


def _stream(folder, **kw):
    """A streamed load with the page cache dropped after it (reading the resident parts at load
    caches the pages around them, which in these small files hold parts of blocks)."""
    scope = logitscope.load(folder, device="cpu", device_map="stream", **kw)
    drop_cache(folder)
    return scope, scope.model._logitscope_streamer


def _stored(folder) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, copied (no map of the shards stays alive)."""
    from safetensors.torch import load_file

    out = {}
    for p in Path(folder).glob("*.safetensors"):
        out.update({k: v.clone() for k, v in load_file(p).items()})
    gc.collect()
    return out


def _same(a, b):
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@pytest.fixture
def llama_dir(tmp_path):
    return _save(tmp_path)


def _buffers_held(monkeypatch) -> list[int]:
    """After every buffer taken for a read: how many buffers the reader holds."""
    held = []
    real = direct_mod.DirectReader._take

    def take(self, nbytes):
        buf = real(self, nbytes)
        held.append(len(self._buffers))
        return buf

    monkeypatch.setattr(direct_mod.DirectReader, "_take", take)
    return held


def test_uncached_blocks_are_read_directly_and_exact(llama_dir, monkeypatch):
    if not direct_mod.DirectReader.available():
        pytest.skip("no O_DIRECT here")
    held = _buffers_held(monkeypatch)
    want = _reference(llama_dir, IDS, [IDS, IDS[:4]])
    stored = _stored(llama_dir)["lm_head.weight"]
    scope, streamer = _stream(llama_dir)
    head = scope.parts.head.weight
    mapped_at = head.data_ptr()
    a = scope.lens(IDS)
    assert head.data_ptr() != mapped_at and torch.equal(head, stored)  # the head read directly, in place of its map
    assert streamer._mapped <= {0}  # blocks 1.. read directly (block 0 was taken at load, before the drop)
    later = [k for i in range(1, scope.n_layers) for k in streamer.keys[i].values()]
    assert streamer.direct.bytes_read >= Shards(llama_dir).nbytes(later)  # every byte, in aligned reads
    b = scope.lens([IDS, IDS[:4]])  # a second pass reuses the buffers
    _same(a, want[0])
    _same(b[0], want[1][0])
    _same(b[1], want[1][1])
    assert len(held) >= 2 * (scope.n_layers - 1) and max(held) == 2, held  # two blocks in flight, reused
    streamer.release()
    assert streamer.direct.held_bytes == 0  # released: the buffers are unmapped


def test_cached_blocks_are_mapped_not_read_again(llama_dir):
    shards = Shards(llama_dir)
    for p in llama_dir.glob("*.safetensors"):
        p.read_bytes()  # into the page cache
    assert shards.resident(_block_keys(llama_dir)) == 1.0
    (want,) = _reference(llama_dir, IDS)
    for p in llama_dir.glob("*.safetensors"):
        p.read_bytes()
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    streamer = scope.model._logitscope_streamer
    _same(scope.lens(IDS), want)
    assert streamer._mapped == set(range(scope.n_layers))
    assert streamer.direct is None or streamer.direct.bytes_read == 0


def test_a_kept_weight_keeps_its_buffer(llama_dir):
    """A caller that keeps a block's tensor keeps its bytes: later blocks go to another buffer."""
    stored = _stored(llama_dir)
    scope, streamer = _stream(llama_dir)
    kept = streamer._fetch(1).result()  # block 1's tensors, as the worker hands them over
    assert 1 not in streamer._mapped  # read directly
    streamer.release()
    scope.lens(IDS)
    scope.lens([IDS, IDS[:5]])
    for path, key in streamer.keys[1].items():
        assert torch.equal(kept[path], stored[key]), path


def test_refused_direct_reads_fall_back_to_maps(llama_dir, monkeypatch):
    real_open = os.open

    def no_direct(path, flags, *a, **kw):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument", path)
        return real_open(path, flags, *a, **kw)

    (want,) = _reference(llama_dir, IDS)
    monkeypatch.setattr(direct_mod.os, "open", no_direct)
    scope, streamer = _stream(llama_dir)
    _same(scope.lens(IDS), want)
    if streamer.direct is not None:
        assert streamer.direct.refused and streamer.direct.bytes_read == 0
    assert streamer._mapped == set(range(scope.n_layers))


def test_bf16_checkpoint_read_directly_and_converted(tmp_path):
    folder = _save(tmp_path, dtype=torch.bfloat16)
    (want,) = _reference(folder, IDS, dtype="float32")
    scope, streamer = _stream(folder, dtype="float32")
    _same(scope.lens(IDS), want)
    assert streamer._mapped <= {0} and streamer.direct.bytes_read > 0


def test_truncated_shard_is_refused_at_load(llama_dir):
    shard = sorted(llama_dir.glob("*.safetensors"))[-1]
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 100)
    with pytest.raises(CorruptWeightsError, match="truncated"):
        logitscope.load(llama_dir, device="cpu", device_map="stream")


def test_shard_truncated_after_load_is_named_not_read_past(llama_dir):
    scope, streamer = _stream(llama_dir)
    last = streamer.keys[-1]
    entries = streamer.shards.entries
    key = max(last.values(), key=lambda k: entries[k].end)
    path = entries[key].path
    resident = [n for n, e in entries.items() if e.path == path and ".layers." not in n]
    assert not resident, resident  # the file holds blocks only (a mapped resident part would fault)
    with open(path, "r+b") as f:
        f.truncate(entries[key].end - 64)
    with pytest.raises(CorruptWeightsError, match="truncated"):
        scope.lens(IDS)


def test_direct_streamed_peak_memory_is_bounded_by_the_block_size(tmp_path):
    """8 blocks of ~25 MB read with O_DIRECT: the buffers are two blocks, reused, not eight."""
    from peak_rss import BLOCK_BYTES as block
    from peak_rss import save_blocky_llama, streamed_growth

    if not direct_mod.DirectReader.available():
        pytest.skip("no O_DIRECT here")
    save_blocky_llama(tmp_path)
    job = """
    streamer = scope.model._logitscope_streamer
    read0 = streamer.direct.bytes_read
    scope.lens(list(range(64)))
    result = dict(read=streamer.direct.bytes_read - read0, mapped=sorted(streamer._mapped))
    """
    m = streamed_growth(tmp_path, job, cold=True)
    assert m["read"] >= 7 * block, m  # blocks 1..7 at least read directly (block 0 may come from the read-ahead)
    assert m["grown"] <= 3 * block + 32 * 2**20, (m["grown"] / 2**20, block / 2**20)
