"""Multi-stream, shared-block and hybrid models, every row against the truncated model.

The oracle never uses logitscope: a deep copy of the model with its block list cut after block
``l`` (DeepSeek-V4's hyper-connections, Gemma 3n's AltUp, Granite 4.0-H's Mamba/attention
hybrid), or, where one block runs several times (ALBERT's one layer group), the forward stopped
after the ``k``-th block call: every later call hands its input stream straight through, so the
model's own tail runs on the stream as it stood after call ``k``.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import logitscope

ROOT = Path(__file__).resolve().parents[2]
SRC = [7, 20, 33, 46, 59, 72]


def _small():
    if "arch_small" not in sys.modules:
        spec = importlib.util.spec_from_file_location("arch_small", ROOT / "scripts" / "arch_small.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["arch_small"] = module
        spec.loader.exec_module(module)
    return sys.modules["arch_small"]


def _locked_transformers() -> str | None:
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        if line.startswith("transformers=="):
            return line.split("==", 1)[1].strip()
    return None


def _build(model_type: str, class_name: str, **overrides):
    import transformers

    # an older release (the minimum-versions run) may predate the family: skipped there, never on the locked one
    if not hasattr(transformers, class_name) and transformers.__version__ != _locked_transformers():
        pytest.skip(f"transformers {transformers.__version__} has no {class_name}")
    small = _small()
    config = small.small_config(model_type)
    for key, value in overrides.items():
        setattr(config, key, value)
    return small.build(class_name, config)


def _run(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([SRC]), use_cache=False).logits[0]


def cut_after(model, blocks: str, n_keep: int) -> torch.Tensor:
    """Logits of a copy of ``model`` whose block list keeps its first ``n_keep`` blocks."""
    cut = copy.deepcopy(model)
    parent_path, _, name = blocks.rpartition(".")
    parent = cut.get_submodule(parent_path)
    setattr(parent, name, nn.ModuleList(list(getattr(parent, name))[:n_keep]))
    return _run(cut)


def stopped_after(model, blocks: str, n_calls: int) -> torch.Tensor:
    """Logits of a copy of ``model`` whose block calls after the ``n_calls``-th pass their input through."""
    cut = copy.deepcopy(model)
    state = {"calls": 0}

    def take_input(module, args, kwargs):
        state["calls"] += 1
        state["h"] = args[0] if args else kwargs["hidden_states"]

    def pass_through(module, args, kwargs, output):
        if state["calls"] > n_calls:
            return state["h"] if isinstance(output, torch.Tensor) else (state["h"], *output[1:])
        return None

    for block in cut.get_submodule(blocks):
        block.register_forward_pre_hook(take_input, with_kwargs=True)
        block.register_forward_hook(pass_through, with_kwargs=True)
    return _run(cut)


def _assert_rows(scope, oracle, n_rows: int):
    got = scope.layer_logits(SRC)
    assert got.logits.shape[0] == n_rows + 1 == scope.n_layers + 1
    for row in range(n_rows + 1):
        torch.testing.assert_close(got.logits[row], oracle(row), atol=1e-5, rtol=1e-5)
    # the rows are distinct points of the forward, not one stream repeated
    assert all(not torch.allclose(got.logits[r], got.logits[r + 1]) for r in range(n_rows))
    return got


def test_deepseek_v4_hyper_connection_rows_equal_the_truncated_model():
    model = _build("deepseek_v4", "DeepseekV4ForCausalLM")
    hc = model.config.hc_mult
    assert hc > 1
    with torch.no_grad():  # the blocks really carry hc_mult streams per position
        seen = []
        handle = model.model.layers[0].register_forward_hook(lambda m, a, o: seen.append(o.shape))
        _run(model)
        handle.remove()
    assert seen[0] == (1, len(SRC), hc, model.config.hidden_size)
    scope = logitscope.Scope(model)
    L = len(model.model.layers)
    got = _assert_rows(scope, lambda row: cut_after(model, "model.layers", row), L)
    torch.testing.assert_close(got.logits[-1], _run(model))  # last row: the model's own logits


def test_gemma3n_altup_rows_equal_the_truncated_model():
    model = _build("gemma3n_text", "Gemma3nForCausalLM")
    assert model.config.altup_num_inputs > 1
    scope = logitscope.Scope(model)
    L = len(model.model.layers)
    _assert_rows(scope, lambda row: cut_after(model, "model.layers", row), L)
    res = scope.lens(SRC)  # the streaming lens agrees with the full logits
    logp = _run(model).double().log_softmax(-1)
    assert abs(float(res.entropy[-1].mean()) - float(-(logp.exp() * logp).sum(-1).mean())) < 1e-4


def test_albert_rows_are_block_calls_in_forward_order():
    model = _build("albert", "AlbertForMaskedLM", num_hidden_layers=4)
    groups = model.albert.encoder.albert_layer_groups
    assert len(groups) == 1  # one layer group, applied num_hidden_layers times
    scope = logitscope.Scope(model)
    assert scope.n_layers == 4
    _assert_rows(scope, lambda row: stopped_after(model, "albert.encoder.albert_layer_groups", row), 4)
    lens = scope.lens(SRC, layers=[2])
    assert lens.layer_names == ["2"]


def test_albert_two_groups_follow_call_order():
    """Two layer groups over four calls (group 0, 0, 1, 1): row k is the k-th call, whichever group."""
    model = _build("albert", "AlbertForMaskedLM", num_hidden_layers=4, num_hidden_groups=2)
    assert len(model.albert.encoder.albert_layer_groups) == 2
    scope = logitscope.Scope(model)
    _assert_rows(scope, lambda row: stopped_after(model, "albert.encoder.albert_layer_groups", row), 4)


def test_granite_4_hybrid_rows_equal_the_truncated_model():
    model = _build("granitemoehybrid", "GraniteMoeHybridForCausalLM")
    kinds = [("mamba" if getattr(layer, "mamba", None) is not None else "attention") for layer in model.model.layers]
    assert "mamba" in kinds and "attention" in kinds, kinds
    scope = logitscope.Scope(model)
    L = len(model.model.layers)
    _assert_rows(scope, lambda row: cut_after(model, "model.layers", row), L)


def test_albert_refuses_sub_layer_rows():
    from logitscope.errors import UnsupportedModelError

    scope = logitscope.Scope(_build("albert", "AlbertForMaskedLM"))
    with pytest.raises(UnsupportedModelError, match="sub-layer"):
        scope.lens(SRC, sublayers=True)


def _zero(module, args, output):
    return (torch.zeros_like(output[0]), *output[1:]) if isinstance(output, tuple) else torch.zeros_like(output)


# (model type, class, the modules whose outputs the block adds to the stream after its mixer)
_HYBRIDS = [
    ("granitemoehybrid", "GraniteMoeHybridForCausalLM", ("block_sparse_moe", "shared_mlp")),
    ("jamba", "JambaForCausalLM", ("feed_forward",)),
    ("lfm2", "Lfm2ForCausalLM", ("feed_forward",)),
]


@pytest.mark.parametrize(("model_type", "class_name", "mlps"), _HYBRIDS)
def test_hybrid_sub_layer_rows_equal_the_model_with_the_mlp_silenced(model_type, class_name, mlps):
    """Row "l.attn" of a Mamba/conv/attention hybrid: blocks after l removed, block l's MLP output zeroed."""
    model = _build(model_type, class_name)
    scope = logitscope.Scope(model)
    L = scope.n_layers
    got = scope.lens(SRC, sublayers=True)
    names = [f"{b}.attn" for b in range(1, L + 1)]
    assert [n for n in got.layer_names if n.endswith(".attn")] == names
    for block in range(1, L + 1):
        cut = copy.deepcopy(model)
        cut.model.layers = nn.ModuleList(list(cut.model.layers)[:block])
        for name in mlps:
            module = getattr(cut.model.layers[block - 1], name, None)
            if module is not None:  # Granite: no MoE where num_local_experts == 0
                module.register_forward_hook(_zero)
        logp = _run(cut).double().log_softmax(-1)
        row = got.layer_names.index(f"{block}.attn")
        entropy = -(logp.exp() * logp).sum(-1).numpy()
        assert abs(got.entropy[row] - entropy).max() < 1e-4
