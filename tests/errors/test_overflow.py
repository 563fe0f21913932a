"""A model whose finite weights overflow its activations loads; lens and logits
raise one NonFiniteError naming the first overflowing block; info and embeddings still work."""

from __future__ import annotations

import pytest
import tiny
import torch
from typer.testing import CliRunner

from logitscope.cli import app
from logitscope.errors import NonFiniteError
from logitscope.scope import Scope


def overflowing(model, block: int):
    """Scale one MLP's gate and up projections by 1e30: finite weights, inf activations (fp32)."""
    mlp = model.model.layers[block].mlp
    with torch.no_grad():
        mlp.gate_proj.weight.mul_(1e30)
        mlp.up_proj.weight.mul_(1e30)
    return model


def first_nonfinite_block(model, ids) -> int:
    """From the model itself: 1 + the index of the first block whose output holds NaN/inf."""
    outs = []
    hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o[0] if isinstance(o, tuple) else o))
             for b in model.model.layers]  # fmt: skip
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    for h in hooks:
        h.remove()
    assert not bool(torch.isfinite(logits).all())
    return next(i + 1 for i, o in enumerate(outs) if not bool(torch.isfinite(o).all()))


@pytest.mark.parametrize("block", [0, 1])
def test_named_block_and_deferred(block):
    model = overflowing(tiny.build("llama"), block)
    expected = first_nonfinite_block(model, [7, 20, 33, 46, 59, 72])
    assert expected == block + 1
    scope = Scope(model, None)  # loads: the overflow is reported where it matters
    for call in (lambda: scope.lens([1, 2, 3]), lambda: scope.logits([1, 2, 3])):
        with pytest.raises(NonFiniteError, match=rf"block {expected} \(model\.layers\.{block}\)"):
            call()
    assert scope.info().n_layers == model.config.num_hidden_layers
    emb = scope.embed([1, 2, 3])
    assert torch.equal(emb.vectors, model.model.embed_tokens.weight[[1, 2, 3]].detach())


def test_cli_info_and_embed_work(tmp_path):
    import transformers as tf

    from logitscope.loading import DEMO_DIR

    model = overflowing(tf.AutoModelForCausalLM.from_pretrained(DEMO_DIR), 2)
    model.save_pretrained(tmp_path)
    tf.AutoTokenizer.from_pretrained(DEMO_DIR).save_pretrained(tmp_path)
    runner = CliRunner()
    for args in (["info", tmp_path], ["embed", tmp_path, "God"]):
        res = runner.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, (res.output, res.exception)
    res = runner.invoke(app, ["lens", str(tmp_path), "In the beginning"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert "block 3 (model.layers.2)" in res.stderr and "differ by nan" not in res.stderr, res.stderr
