"""Peak-RSS growth of a job on a streamed model, measured in a fresh process (test helper).

The model: a random-init Llama of 8 blocks of ~25 MB (float32), large enough that a block's
weights dwarf the interpreter's noise, saved in shards of 60 MB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

WIDTH, FFN, LAYERS = 512, 3072, 8
BLOCK_BYTES = 4 * (4 * WIDTH * WIDTH + 3 * WIDTH * FFN)  # float32 bytes of one block


def save_blocky_llama(path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=WIDTH, intermediate_size=FFN, num_hidden_layers=LAYERS, num_attention_heads=8, vocab_size=512
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path, max_shard_size="60MB")


def streamed_growth(path, job: str, *, cold: bool = False) -> dict:
    """Run ``job`` (Python lines using ``scope``, a streamed load of ``path``, after a warm-up lens)
    in a fresh interpreter; ``{"grown": peak RSS - RSS before the job, **result}``, where the job
    may set ``result`` to a dict of JSON values. ``cold``: the shards' pages are dropped from the
    page cache before the job (so the blocks are read with O_DIRECT, not mapped)."""
    code = (
        textwrap.dedent(f"""
        import glob, json, os, logitscope
        def status(key):
            return next(int(x.split()[1]) * 1024 for x in open("/proc/self/status") if x.startswith(key))
        scope = logitscope.load({str(path)!r}, device="cpu", device_map="stream")
        scope.lens([1, 2, 3])  # warm-up: imports, first allocations, the self-check
        if {cold!r}:
            scope.model._logitscope_streamer.release()
            for p in glob.glob(os.path.join({str(path)!r}, "*.safetensors")):
                fd = os.open(p, os.O_RDONLY)
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
        base = status("VmRSS:")
        result = {{}}
    """)
        + textwrap.dedent(job)
        + textwrap.dedent("""
        print(json.dumps(dict(result, grown=status("VmHWM:") - base)))
    """)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
