"""Models larger than memory: streamed blocks (device_map="stream"), accelerate's offload, budgets.

Every comparison is against the same checkpoint loaded whole (the in-memory lens, itself checked
against the model by test_lens_exact.py) or against the model's own logits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch

import logitscope
from logitscope.errors import CorruptWeightsError, InputError, OutputError, UnsupportedModelError

IDS = [3, 17, 5, 42, 8, 11, 60, 2, 9]


def _save(path, name="llama", *, tie=None, shard="20KB", dtype=None):
    model = tiny.build(name)
    if tie is not None:
        model.config.tie_word_embeddings = tie
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(path, max_shard_size=shard)  # several shards and an index
    return model


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama_untied")
    _save(path, tie=False)
    return path


def _same(a, b):
    for field in ("entropy", "kl_to_final", "top_ids", "top_probs", "target_logprob", "target_rank"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma2"])
def test_streamed_lens_equals_in_memory(tmp_path, name):
    _save(tmp_path, name)
    ref = logitscope.load(tmp_path, device="cpu")
    scope = logitscope.load(tmp_path, device="cpu", device_map="stream")
    streamer = scope.model._logitscope_streamer
    assert all(p.is_meta for p in scope.parts.blocks.parameters())  # nothing of the blocks resident
    inputs = [IDS, IDS[:4]]
    _same(scope.lens(inputs)[0], ref.lens(inputs)[0])
    _same(scope.lens(inputs)[1], ref.lens(inputs)[1])
    assert all(p.is_meta for p in scope.parts.blocks.parameters())  # released after the forward
    assert streamer.loads == 2 * scope.n_layers  # one pass per batch: the self-check took none


def test_self_check_rides_along_the_first_forward(llama_dir):
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    streamer = scope.model._logitscope_streamer
    assert scope._check_pending and streamer.loads == 0  # loading read no block
    scope.lens(IDS)
    assert not scope._check_pending
    assert streamer.loads == scope.n_layers  # the lens and its check: one pass


def test_sublayer_lens_streamed_carries_the_check_and_equals_in_memory(llama_dir):
    ref = logitscope.load(llama_dir, device="cpu")
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    streamer = scope.model._logitscope_streamer
    assert scope._check_pending
    got = scope.lens(IDS, sublayers=True)
    assert not scope._check_pending
    assert streamer.loads == scope.n_layers  # the sub-layer lens and its check: one pass
    want = ref.lens(IDS, sublayers=True)
    assert got.layer_names == want.layer_names and len(got.layer_names) == 2 * scope.n_layers + 1
    _same(got, want)


def test_checkpoint_transformers_converts_is_refused_by_streaming_and_offloads(tmp_path):
    """Mixtral's checkpoint keeps one tensor per expert, which transformers fuses at load: streaming
    (one checkpoint tensor per parameter) says so and names the way that works; that way is exact."""
    _save(tmp_path, "mixtral", tie=False)
    with pytest.raises(UnsupportedModelError, match="converts this checkpoint's tensors.*offload_folder"):
        logitscope.load(tmp_path, device="cpu", device_map="stream")
    ref = logitscope.load(tmp_path, device="cpu")
    off = logitscope.load(tmp_path, device="cpu", max_memory={"cpu": "60KB"}, offload_folder=tmp_path / "off")
    assert any(getattr(m, "_hf_hook", None) is not None for m in off.model.modules())  # really offloaded
    _same(off.lens(IDS), ref.lens(IDS))


def test_ride_along_check_is_real(llama_dir):
    """A wrong tail (here a stray rescale) is caught by the check that rides along."""
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    scope.parts.scale = 1.7
    with pytest.raises(UnsupportedModelError, match="cannot reproduce"):
        scope.lens(IDS)


def _dispatches_disk_only(path, folder) -> bool:
    """Whether the installed transformers dispatches a model that accelerate offloads wholly to disk
    (5.24 does; 5.0 returns it undispatched, its weights left on meta): asked of transformers itself."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, device_map="auto", max_memory={"cpu": 20_000}, offload_folder=str(folder)
    )
    return any(getattr(m, "_hf_hook", None) is not None for m in model.modules())


def _locked_transformers() -> str:
    lock = (Path(__file__).resolve().parents[1] / "requirements" / "lock.txt").read_text()
    return next(line.split("==")[1] for line in lock.splitlines() if line.startswith("transformers=="))


@pytest.mark.parametrize("budget", ["30KB", "60KB"])  # every module on disk; the embeddings in memory
def test_offloaded_auto_map_head_on_disk_equals_in_memory(llama_dir, tmp_path, budget):
    import transformers

    ref = logitscope.load(llama_dir, device="cpu")
    if budget == "30KB" and not _dispatches_disk_only(llama_dir, tmp_path / "probe"):
        assert transformers.__version__ != _locked_transformers()
        with pytest.raises(InputError, match="sends every module .* to disk"):
            logitscope.load(llama_dir, device="cpu", max_memory=budget, offload_folder=tmp_path / "off")
        return
    scope = logitscope.load(llama_dir, device="cpu", max_memory=budget, offload_folder=tmp_path / "off")
    head = scope.parts.head
    assert head.weight.is_meta and getattr(head, "_hf_hook", None) is not None  # the head is on disk
    assert scope._check_pending
    _same(scope.lens(IDS), ref.lens(IDS))
    assert not scope._check_pending and head.weight.is_meta  # back on disk after the projection
    np.testing.assert_array_equal(scope.lens([IDS, IDS[:5]])[1].entropy, ref.lens([IDS, IDS[:5]])[1].entropy)


@pytest.mark.parametrize("cpu_bytes", [20_000, 60_000])  # every module on disk; the embeddings in memory
def test_user_dispatched_model(llama_dir, tmp_path, cpu_bytes):
    """A model the user offloaded with transformers/accelerate: Scope calls the hooked modules."""
    import transformers
    from transformers import AutoModelForCausalLM

    ref = logitscope.load(llama_dir, device="cpu")
    model = AutoModelForCausalLM.from_pretrained(
        llama_dir, device_map="auto", max_memory={"cpu": cpu_bytes}, offload_folder=str(tmp_path)
    )
    assert model.get_input_embeddings().weight.is_meta == (cpu_bytes == 20_000)
    assert model.lm_head.weight.is_meta
    if not any(getattr(m, "_hf_hook", None) is not None for m in model.modules()):
        # transformers 5.0 left the all-disk model undispatched: nothing can load its weights
        with pytest.raises(CorruptWeightsError, match="'meta' device with nothing to load them from"):
            logitscope.Scope(model)
        assert cpu_bytes == 20_000 and transformers.__version__ != _locked_transformers()
        return
    scope = logitscope.Scope(model)
    _same(scope.lens(IDS), ref.lens(IDS))
    data = torch.tensor(IDS * 4)
    ev, ev_ref = scope.evaluate(data, seq_len=8, ci="stderr"), ref.evaluate(data, seq_len=8, ci="stderr")
    np.testing.assert_array_equal(ev.window_sums, ev_ref.window_sums)


def test_streamed_eval_equals_in_memory(llama_dir):
    ref = logitscope.load(llama_dir, device="cpu")
    scope = logitscope.load(llama_dir, device="cpu", device_map="stream")
    data = torch.tensor((IDS * 5 + IDS[::-1] * 5)[:65])  # 8 windows of 8 scored tokens: 2 batches of 4
    a = scope.evaluate(data, seq_len=8, batch_size=4, ci="stderr")
    b = ref.evaluate(data, seq_len=8, batch_size=4, ci="stderr")
    np.testing.assert_array_equal(a.window_sums, b.window_sums)
    np.testing.assert_array_equal(a.ce, b.ce)
    assert not scope._check_pending
    assert a.n_windows == 8
    assert scope.model._logitscope_streamer.loads == 2 * scope.n_layers  # a pass per batch, none for the check


def test_bf16_last_row_is_its_own_bf16_logits(tmp_path):
    """Stored float32, streamed as bfloat16 (converted per block): the lens's last row is the
    model's own bf16 logits, bit for bit."""
    from transformers import AutoModelForCausalLM

    _save(tmp_path, tie=False)
    scope = logitscope.load(tmp_path, device="cpu", device_map="stream", dtype="bfloat16")
    own = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        logits = own(torch.tensor([IDS])).logits[0]
    assert logits.dtype == torch.bfloat16
    ours = scope.layer_logits(IDS, layers=[-1]).logits[0]
    assert torch.equal(ours, logits.float())
    stored = tmp_path / "bf16"
    _save(stored, tie=False, dtype=torch.bfloat16)  # stored bf16: zero-copy blocks
    scope = logitscope.load(stored, device="cpu", device_map="stream")
    own = AutoModelForCausalLM.from_pretrained(stored).eval()
    with torch.no_grad():
        logits = own(torch.tensor([IDS])).logits[0]
    assert torch.equal(scope.layer_logits(IDS, layers=[-1]).logits[0], logits.float())


def test_budget_alone_streams_what_does_not_fit(llama_dir):
    small = logitscope.load(llama_dir, device="cpu", max_memory="60KB")
    assert small.model._logitscope_streamer is not None
    assert not small.model._logitscope_streamer.prefetch  # two blocks do not fit in 60 KB
    big = logitscope.load(llama_dir, device="cpu", max_memory="1GiB")
    assert getattr(big.model, "_logitscope_streamer", None) is None  # fits: loaded as usual
    _same(small.lens(IDS), big.lens(IDS))


def test_errors_name_their_cause(llama_dir, tmp_path):
    with pytest.raises(InputError, match="smaller than one block"):
        logitscope.load(llama_dir, device="cpu", max_memory="10KB")
    with pytest.raises(InputError, match="memory size"):
        logitscope.load(llama_dir, device="cpu", max_memory="lots")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="offload folder"):
        logitscope.load(llama_dir, device="cpu", max_memory="30KB", offload_folder=blocker / "sub")
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(llama_dir))
    with pytest.raises(CorruptWeightsError, match="meta"):
        logitscope.Scope(empty)


def test_nan_in_a_streamed_block_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    _save(tmp_path, shard="1GB")
    weights = load_file(tmp_path / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"][0, 0] = float("nan")
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    scope = logitscope.load(tmp_path, device="cpu", device_map="stream")  # no pass at load: no error yet
    with pytest.raises(CorruptWeightsError, match="up_proj"):
        scope.lens(IDS)


def test_streamed_peak_memory_is_bounded_by_the_block_size(tmp_path):
    """8 blocks of ~25 MB: a streamed lens grows the process by about two blocks, not eight."""
    from peak_rss import BLOCK_BYTES as block
    from peak_rss import LAYERS, save_blocky_llama, streamed_growth

    save_blocky_llama(tmp_path)
    grown = streamed_growth(tmp_path, "scope.lens(list(range(64)))")["grown"]
    assert grown <= 3 * block + 32 * 2**20, (grown / 2**20, block / 2**20)
    assert LAYERS * block > 3 * block + 32 * 2**20  # the bound is below what the whole model takes


def test_cli_lens_streams(tiny_lm_dir):
    cmd = [sys.executable, "-m", "logitscope", "lens", str(tiny_lm_dir), "The cat sat", "--device", "cpu"]
    ref = subprocess.run([*cmd, "--format", "json"], capture_output=True, text=True)
    got = subprocess.run([*cmd, "--format", "json", "--device-map", "stream"], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["top_ids"] == json.loads(ref.stdout)["top_ids"]
    bad = subprocess.run([*cmd, "--max-memory", "1KB"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "--max-memory" in bad.stderr


def _quantized(tmp_path, backend: str, **kw):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM, TorchAoConfig

    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, vocab_size=96)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)  # 4-bit blocks need rows of at least 64 weights
    if backend == "torchao":
        pytest.importorskip("torchao")
        from torchao.quantization import Int8WeightOnlyConfig

        q = TorchAoConfig(Int8WeightOnlyConfig())
    else:
        pytest.importorskip("bitsandbytes")
        q = BitsAndBytesConfig(**kw)
    return AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=q, device_map="cpu").eval()


@pytest.mark.parametrize(
    "backend, kw",
    [
        ("bnb", dict(load_in_8bit=True, llm_int8_skip_modules=[])),  # the head quantized too: called as a module
        ("bnb", dict(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)),
        ("torchao", {}),
    ],
    ids=["bnb-int8-head", "bnb-nf4", "torchao-int8wo"],
)
def test_quantized_last_row_is_its_own_logits(tmp_path, backend, kw):
    """bitsandbytes (CPU backend) and torchao int8 weight-only: the self-check passes and the lens's
    last row equals the quantized model's own logits."""
    model = _quantized(tmp_path, backend, **kw)
    scope = logitscope.Scope(model)
    with torch.no_grad():
        own = model(torch.tensor([IDS])).logits[0].float()
    ours = scope.layer_logits(IDS, layers=[-1]).logits[0]
    torch.testing.assert_close(ours, own, rtol=0, atol=0)
    assert scope.lens(IDS).top_ids[-1, :, 0].tolist() == own.argmax(-1).tolist()
