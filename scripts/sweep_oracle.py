"""The truncation oracle of the architecture sweep: the model itself, cut after its first ``l`` blocks.

Used by ``scripts/arch_sweep.py``. The oracle is a deep copy of the model whose block list keeps
only its first ``l`` blocks, called exactly as the lens calls the model (:func:`forward_inputs`);
:func:`compare` measures one lens row against the oracle's log-probs.
"""

from __future__ import annotations

import copy
import inspect
import sys

import arch_small

SEQ = 6
SRC = [(7 + 13 * i) % arch_small.V for i in range(SEQ)]  # avoids the special ids 0..6
TGT = [14, 52, 9, 30]
ATOL = 1e-4  # on entropy, KL and log-probs (nats); float32 model, float64 oracle


def decoder_start(model) -> int | None:
    """The decoder's first token by the model's own code: its config, ``_shift_right`` or
    ``shift_tokens_right`` (mBART: the last non-pad input token); ``None`` when it has no rule."""
    import torch

    start = getattr(model.config, "decoder_start_token_id", None)
    if start is not None:
        return int(start)
    labels = torch.tensor([TGT])
    shift = getattr(sys.modules[type(model).__module__], "shift_tokens_right", None)
    if shift is not None and "decoder_start_token_id" not in inspect.signature(shift).parameters:
        return int(shift(torch.tensor([SRC]), model.config.pad_token_id)[0, 0])  # what forward(input_ids) does
    try:
        return int(model._shift_right(labels)[0, 0])
    except Exception:  # noqa: BLE001 - no method, or it needs decoder_start_token_id
        return None


def forward_inputs(model) -> dict:
    """What the lens feeds the model: the ids (and decoder ids) with all-ones attention masks, no
    KV cache (as the lens runs). The masks matter: some releases skip the causal mask when none is
    given (MoshiModel in transformers 5.0 then attends to later tokens in eager attention), and the
    oracle must be the model called as the lens calls it."""
    import torch

    params = inspect.signature(model.forward).parameters
    kw = {"input_ids": torch.tensor([SRC])}
    if "attention_mask" in params:
        kw["attention_mask"] = torch.ones_like(kw["input_ids"])
    if "use_cache" in params:
        kw["use_cache"] = False
    if getattr(model.config, "is_encoder_decoder", False):
        kw["decoder_input_ids"] = torch.tensor([[decoder_start(model), *TGT]])
        if "decoder_attention_mask" in params:
            kw["decoder_attention_mask"] = torch.ones_like(kw["decoder_input_ids"])
    return kw


def _pass_through_after(modules, n_keep: int) -> None:
    """Hook ``modules`` so that every call after the first ``n_keep`` (counted over all of them, in
    call order) hands its input stream straight through: the forward as if stopped there."""
    import torch

    state = {"calls": 0}

    def take_input(module, args, kwargs):
        state["calls"] += 1
        state["h"] = args[0] if args else kwargs["hidden_states"]

    def pass_through(module, args, kwargs, output):
        if state["calls"] <= n_keep:
            return None
        if isinstance(output, torch.Tensor):
            return state["h"]
        return (state["h"], *output[1:])

    for module in modules:
        module.register_forward_pre_hook(take_input, with_kwargs=True)
        module.register_forward_hook(pass_through, with_kwargs=True)


def oracle(model, blocks_path: str, n_keep: int, *, identity_block: bool = False, repeated: bool = False):
    """(positions, vocab) float64 log-probs of a deep copy of ``model`` cut after ``n_keep`` blocks.

    ``identity_block`` (for ``n_keep == 0`` in models that cannot run with no blocks at all, e.g.
    DeBERTa-v2): keep one block but make it hand its input stream straight through.
    ``repeated`` (models that run their blocks more than once, e.g. ALBERT): stop the forward
    after the ``n_keep``-th block call, i.e. every later call hands its input straight through.
    Models whose blocks are no module list (XLM) are cut by :data:`arch_small.TRUNCATE`.
    """
    import torch
    from torch import nn

    cut = copy.deepcopy(model)
    parent_path, _, name = blocks_path.rpartition(".")
    parent = cut.get_submodule(parent_path) if parent_path else cut
    truncate = arch_small.TRUNCATE.get(model.config.model_type)
    if truncate is not None:
        truncate(cut, n_keep)
    elif repeated:
        blocks = getattr(parent, name)
        _pass_through_after(blocks if isinstance(blocks, nn.ModuleList) else [blocks], n_keep)
    else:
        kept = list(getattr(parent, name))[: max(n_keep, 1 if identity_block else 0)]
        setattr(parent, name, nn.ModuleList(kept))
        if identity_block:
            _pass_through_after(kept[:1], 0)
    with torch.no_grad():
        return cut(**forward_inputs(model)).logits[0].double().log_softmax(-1)


def compare(res, logp, final) -> float:
    """Largest difference between one lens row and its oracle log-probs (entropy, KL, target)."""
    import numpy as np

    p = logp.exp()
    entropy = -(p * logp).sum(-1).numpy()
    kl = (final.exp() * (final - logp)).sum(-1).numpy()
    diffs = [np.abs(res[0] - entropy).max(), np.abs(res[1] - kl).max()]
    tgt = res[3]
    has = tgt >= 0
    if has.any():
        want = logp.numpy()[np.nonzero(has)[0], tgt[has]]
        diffs.append(np.abs(res[2][has] - want).max())
    return float(max(diffs))
