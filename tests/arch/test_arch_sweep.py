"""Every LM architecture transformers can build, lensed row by row against the model cut after that block.

The sweep (``scripts/arch_sweep.py``) walks transformers' own causal-LM, seq2seq-LM and masked-LM
mappings, builds each class small and compares every lens row with the truncation oracle. It runs
once per session here (nothing is cached across runs) and fails on any wrong number or crash.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sweep = _load("arch_sweep")
small = sys.modules["arch_small"]


@pytest.fixture(scope="module")
def outcomes():
    t0 = time.perf_counter()
    result = sweep.sweep()
    if os.environ.get("ARCH_SWEEP_WRITE_DOCS"):  # regenerate docs/architectures.md from this very run
        sweep.write_docs(result, time.perf_counter() - t0)
    if path := os.environ.get("ARCH_SWEEP_SUMMARY"):  # scripts/dev.sh test-latest prints it in its summary line
        Path(path).write_text(sweep.summary(result))
    return result


def _lines(group) -> str:
    return "\n".join(f"{o.status}: {o.entry.class_name} ({', '.join(o.entry.model_types)}): {o.reason}" for o in group)


def test_no_architecture_is_wrong_or_crashes(outcomes):
    bad = [o for o in outcomes if o.status in ("wrong", "crash")]
    assert not bad, "\n" + _lines(bad)


def test_refusals_are_rare_and_say_why(outcomes):
    counts = sweep.counts(outcomes)
    buildable = len(outcomes) - counts["not-buildable"]
    refused = [o for o in outcomes if o.status == "refused"]
    assert len(refused) <= 0.05 * buildable, "\n" + _lines(refused)
    for o in refused:
        assert "cannot" in o.reason and len(o.reason) > 60, o.reason


def test_refused_and_unbuildable_are_few(outcomes):
    """On whichever transformers is installed: at most 3 classes refused, at most 8 not buildable."""
    counts = sweep.counts(outcomes)
    left = [o for o in outcomes if o.status in ("refused", "not-buildable")]
    assert counts["refused"] <= 3 and counts["not-buildable"] <= 8, "\n" + _lines(left)


def test_every_class_is_reported(outcomes):
    assert [o.entry.class_name for o in outcomes] == [e.class_name for e in sweep.entries()]
    assert all(o.reason for o in outcomes if o.status == "not-buildable")
    # the harness itself works: the architectures the other tests name are all built and exact
    status = {t: o.status for o in outcomes for t in o.entry.model_types if "causal" in o.entry.mappings}
    for model_type in ("gpt2", "llama", "mistral", "gemma2", "phi", "opt", "bloom", "falcon", "gpt_neox", "mixtral"):
        assert status[model_type] == "exact", model_type
    assert sweep.counts(outcomes)["exact"] >= 150


def _documented_version(text: str) -> str | None:
    m = re.search(r"^transformers (\S+), logitscope", text, re.M)
    return m.group(1).rstrip(",") if m else None


def test_docs_table_names_its_version():
    assert _documented_version((ROOT / "docs" / "architectures.md").read_text()) is not None


def test_docs_table_is_current(outcomes):
    """docs/architectures.md is the sweep's own output on the transformers it names (regenerate: --write-docs).

    Row by row only on that version: on any other release the invariants above are what must hold.
    """
    import transformers

    text = (ROOT / "docs" / "architectures.md").read_text()
    version = _documented_version(text)
    if version != transformers.__version__:
        pytest.skip(f"docs/architectures.md records transformers {version}; installed {transformers.__version__}")
    documented, section = {}, None
    for line in text.splitlines():
        if m := re.match(r"## ([a-z-]+) \(\d+\)", line):
            section = m.group(1)
        elif line.startswith("| ") and section and not line.startswith(("| class", "| status")):
            documented[line.split("|")[1].strip()] = section
    current = {o.entry.class_name: o.status for o in outcomes}
    assert documented == current, (
        "run `python scripts/arch_sweep.py --write-docs` (or this test with ARCH_SWEEP_WRITE_DOCS=1)"
    )


# -- decoder start token, rescale rules, self-check tolerance (one architecture each) --------


def _entry(class_name: str):
    return next(e for e in sweep.entries() if e.class_name == class_name)


def test_mbart_without_decoder_start_follows_its_own_rule():
    """mBART-cc25 ships decoder_start_token_id = None: the decoder starts from the last non-pad input token."""
    import logitscope

    config = small.small_config("mbart")
    assert config.decoder_start_token_id is None
    model = small.build("MBartForConditionalGeneration", config)
    src = sweep.SRC
    res = logitscope.Scope(model).lens(src)
    assert res.token_ids.tolist() == [src[-1]]
    with torch.no_grad():  # MBart's forward without decoder ids shifts the input: the model's own rule
        own = model(input_ids=torch.tensor([src])).logits[0, 0].double().log_softmax(-1)
    assert res.top_ids[-1, 0, 0] == int(own.argmax())
    assert abs(float(res.entropy[-1, 0]) + float((own.exp() * own).sum())) < 1e-4
    assert sweep.check(_entry("MBartForConditionalGeneration")).status == "exact"


def test_seq2seq_without_any_start_rule_asks_for_one():
    import logitscope
    from logitscope.errors import InputError

    model = small.build("T5ForConditionalGeneration", small.small_config("t5"))
    assert getattr(model.config, "decoder_start_token_id", None) is None
    scope = logitscope.Scope(model)  # loads: the self-check needs no particular start token
    with pytest.raises(InputError, match="decoder_start_token_id"):
        scope.lens(sweep.SRC)
    model.config.decoder_start_token_id = 0
    assert scope.lens(sweep.SRC).token_ids.tolist() == [0]


@pytest.mark.parametrize(
    ("class_name", "model_type"), [("LlamaForCausalLM", "llama"), ("T5ForConditionalGeneration", "t5")]
)
def test_oracle_calls_the_model_as_the_lens_does(class_name, model_type):
    """The oracle's inputs are the lens's: the same keyword arguments, attention masks included."""
    from logitscope.engine.inputs import Encoded, model_inputs

    model = small.build(class_name, small.small_config(model_type))
    model.config.decoder_start_token_id = 0
    kind = "seq2seq" if model.config.is_encoder_decoder else "causal"
    lens = model_inputs(kind, [Encoded(sweep.SRC, [0, *sweep.TGT] if kind == "seq2seq" else None, [])], "cpu", 1)
    ours = sweep.forward_inputs(model)
    assert set(ours) == set(lens)
    for key, value in ours.items():
        if key.endswith("attention_mask"):
            assert value.tolist() == lens[key].tolist()  # all ones: one unpadded input


def test_moshi_is_exact_with_the_mask_the_lens_passes():
    """transformers 5.0's MoshiModel builds no causal mask when it is given no attention_mask (eager
    attention then sees later tokens; from 5.24 it always builds one). The lens passes the mask, so
    the model it must equal is the one called with it: every row exact on either release."""
    outcome = sweep.check(_entry("MoshiForCausalLM"))
    assert outcome.status == "exact", outcome.reason


_T5_FAMILY = [
    ("UMT5ForConditionalGeneration", "umt5", {"tie_word_embeddings": True}),
    ("UMT5ForConditionalGeneration", "umt5", {"tie_word_embeddings": False}),  # umt5-small/base/xl
    ("UMT5ForConditionalGeneration", "umt5", {"tie_word_embeddings": True, "scale_decoder_outputs": False}),
    ("T5ForConditionalGeneration", "t5", {"tie_word_embeddings": True}),
    ("T5ForConditionalGeneration", "t5", {"tie_word_embeddings": False}),
    ("MT5ForConditionalGeneration", "mt5", {"tie_word_embeddings": False}),
    ("MT5ForConditionalGeneration", "mt5", {"tie_word_embeddings": True}),
    ("LongT5ForConditionalGeneration", "longt5", {"tie_word_embeddings": False}),
    ("SwitchTransformersForConditionalGeneration", "switch_transformers", {"tie_word_embeddings": True}),
]


@pytest.mark.parametrize(("class_name", "model_type", "overrides"), _T5_FAMILY)
def test_t5_family_rescale_follows_the_installed_release(class_name, model_type, overrides):
    """Which flag turns the d_model**-0.5 rescale on changed in transformers 5.24 (UMT5); every row stays exact.

    The sweep's check compares each row with the model cut after that block, and the last row with
    the model's own logits, on whichever transformers is installed.
    """
    small.OVERRIDES[model_type] = dict(overrides)
    try:
        outcome = sweep.check(_entry(class_name))
    finally:
        small.OVERRIDES.pop(model_type)
    assert outcome.status == "exact", outcome.reason


def test_rescale_rule_is_read_from_the_installed_code():
    import transformers

    from logitscope.arch.registry import _rescale_in_source

    assert _rescale_in_source(transformers.T5ForConditionalGeneration) == (True, "scale_decoder_outputs")
    assert _rescale_in_source(transformers.SwitchTransformersForConditionalGeneration) == (True, "tie_word_embeddings")
    rescales, flag = _rescale_in_source(transformers.UMT5ForConditionalGeneration)
    assert rescales and flag in ("scale_decoder_outputs", "tie_word_embeddings")


def test_self_check_tolerance_follows_dtype():
    """A tail off by ~1e-4 nats passes the float32 check (1e-3) but not the float64 one (1e-5)."""
    import logitscope
    from logitscope.errors import UnsupportedModelError

    config = small.small_config("llama")
    config.logit_scale = 1.0002  # read by logitscope's post-head, ignored by Llama itself
    model = small.build("LlamaForCausalLM", config)
    logitscope.Scope(model)
    with pytest.raises(UnsupportedModelError, match="tolerance 1e-05"):
        logitscope.Scope(model.double())
