"""The disk side of bench_bigmodel.py: Llama-3-8B-shaped random-init safetensors shards written
tensor by tensor (never the whole model in memory), timed cold reads, block cuts sharing the files."""

from __future__ import annotations

import json
import mmap
import os
import struct
import time
from pathlib import Path

SHAPE = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=8192,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    bos_token_id=128000,
    eos_token_id=128001,
)
SHARD_BYTES = 5 * 2**30


def tensors(L: int, d: int, f: int, h: int, kv: int, V: int):
    """(name, shape) of a Llama checkpoint, in file order."""
    hd = d // h
    yield "model.embed_tokens.weight", (V, d)
    for i in range(L):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (d,)
        yield p + "self_attn.q_proj.weight", (h * hd, d)
        yield p + "self_attn.k_proj.weight", (kv * hd, d)
        yield p + "self_attn.v_proj.weight", (kv * hd, d)
        yield p + "self_attn.o_proj.weight", (d, h * hd)
        yield p + "post_attention_layernorm.weight", (d,)
        yield p + "mlp.gate_proj.weight", (f, d)
        yield p + "mlp.up_proj.weight", (f, d)
        yield p + "mlp.down_proj.weight", (d, f)
    yield "model.norm.weight", (d,)
    yield "lm_head.weight", (V, d)


def write_model(folder: Path, dtype: str, layers: int | None = None) -> int:
    """Random-init shards + config in ``folder``; returns bytes written. Peak memory: one 64 MB pool.

    Drawing 8G normal samples costs minutes of CPU here, so the values are windows of one pool of
    16M N(0, 0.02²) samples at shifting offsets (norm weights are ones).
    """
    import torch

    tdt = getattr(torch, dtype)
    tag = {"bfloat16": "BF16", "float32": "F32"}[dtype]
    size = tdt.itemsize
    folder.mkdir(parents=True, exist_ok=True)
    layers = layers or SHAPE["num_hidden_layers"]
    cfg = dict(SHAPE, num_hidden_layers=layers, model_type="llama", architectures=["LlamaForCausalLM"], dtype=dtype)
    (folder / "config.json").write_text(json.dumps(cfg))
    sh = SHAPE
    items = list(
        tensors(
            layers,
            sh["hidden_size"],
            sh["intermediate_size"],
            sh["num_attention_heads"],
            sh["num_key_value_heads"],
            sh["vocab_size"],
        )
    )
    shards: list[list[tuple[str, tuple]]] = [[]]
    used = 0
    for name, shape in items:
        n = 1
        for s in shape:
            n *= s
        if used and used + n * size > SHARD_BYTES:
            shards.append([])
            used = 0
        shards[-1].append((name, shape))
        used += n * size
    gen = torch.Generator().manual_seed(0)
    step = 2**24
    pool = (torch.randn(step + 65521, generator=gen) * 0.02).to(tdt)  # windows of it fill every tensor
    ones = torch.ones(step, dtype=tdt)
    weight_map, total, k_chunk = {}, 0, 0
    for k, group in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {}, 0
        for name, shape in group:
            n = 1
            for s in shape:
                n *= s
            header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [off, off + n * size]}
            off += n * size
            weight_map[name] = fname
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / fname, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for name, shape in group:
                n = 1
                for s in shape:
                    n *= s
                norm = name.endswith("layernorm.weight") or name == "model.norm.weight"
                for a in range(0, n, step):
                    m = min(step, n - a)
                    k_chunk += 1
                    off = (k_chunk * 7919) % 65521  # a different window per chunk: no two rows alike
                    chunk = ones[:m] if norm else pool[off : off + m]
                    f.write(chunk.view(torch.uint8).numpy().data)
            total += f.tell()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    write_tokenizer(folder)
    return total


def write_tokenizer(folder: Path) -> None:
    """A word-level tokenizer ("t0 t1 ..."), so peers that insist on one (nnsight) can load the model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(1000)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t0").save_pretrained(folder)


def drop_cache(folder: Path) -> None:
    """Ask the kernel to forget the shards' pages (so the next read comes from disk)."""
    for p in folder.glob("*.safetensors"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def time_read(folder: Path, direct: bool = False) -> float:
    """Seconds to read every shard byte from disk, the page cache dropped first: buffered (64 MiB
    reads), or with ``O_DIRECT`` (512 MiB reads into one aligned buffer: the way the streamer reads
    uncached blocks; on this VM the faster way, and the one that leaves the CPU alone)."""
    drop_cache(folder)
    t0 = time.perf_counter()
    if direct:
        buf = mmap.mmap(-1, 512 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        with memoryview(buf) as mv:
            for p in sorted(folder.glob("*.safetensors")):
                fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
                try:
                    off = 0
                    while n := os.preadv(fd, [mv], off):
                        off += n
                finally:
                    os.close(fd)
        buf.close()
    else:
        for p in sorted(folder.glob("*.safetensors")):
            with open(p, "rb", buffering=0) as f:
                while f.read(64 << 20):
                    pass
    dt = time.perf_counter() - t0
    drop_cache(folder)
    return dt


def warm_cache(folder: Path, layers: int) -> None:
    """Read the tensors a ``layers``-block cut of the model uses (its blocks, embeddings, norm,
    head) into the page cache, so a lens of the cut maps them instead of reading the disk."""
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    want = {n for n in index if ".layers." not in n or int(n.split(".layers.")[1].split(".")[0]) < layers}
    for fname in sorted(set(index.values())):
        p = folder / fname
        with open(p, "rb", buffering=0) as f:
            (hlen,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(hlen))
            for name, info in header.items():
                if name in want:
                    b, e = info["data_offsets"]
                    f.seek(8 + hlen + b)
                    left = e - b
                    while left > 0:
                        left -= len(f.read(min(left, 64 << 20)))


def cut(folder: Path, layers: int) -> Path:
    """A sibling directory whose config has only ``layers`` blocks, sharing the same shard files."""
    out = folder.parent / f"{folder.name}-cut{layers}"
    out.mkdir(exist_ok=True)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_hidden_layers"] = layers
    (out / "config.json").write_text(json.dumps(cfg))
    for p in folder.glob("*.safetensors*"):
        if not (out / p.name).exists():
            os.symlink(p, out / p.name)
    return out
