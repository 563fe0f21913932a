"""Structural discovery: find the blocks, final norm and head of an architecture not in the registry.

The registry (:mod:`logitscope.arch.registry`) holds what is known per ``model_type``; this module
finds the same parts by structure for everything else. A wrong guess never gives wrong rows: the
load-time self-check (:func:`logitscope.engine.check.self_check`) refuses a tail that does not reproduce the model.
"""

from __future__ import annotations

from ..errors import UnsupportedModelError
from .registry import NORM_NAMES, REGISTRY, UNLENSABLE, UNLENSABLE_IF, ArchSpec, model_kind, residual_width


def _layer_counts(config) -> set[int]:
    """Block counts a config states (decoder counts only, for encoder-decoder models)."""
    names = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "num_decoder_layers", "decoder_layers")
    if getattr(config, "is_encoder_decoder", False):
        names = ("num_decoder_layers", "decoder_layers") + (
            () if hasattr(config, "decoder_layers") else ("num_layers",)
        )
    return {v for n in names if isinstance(v := getattr(config, n, None), int) and v > 0}


def discover(model) -> ArchSpec:
    """Find blocks, final norm and head of an unlisted architecture by structure.

    Blocks: the ``nn.ModuleList`` whose length is the config's layer count (for encoder-decoder
    models, one under a ``decoder``), preferring lists of one class, then the longest. Final norm: a
    known norm name on the module that owns the blocks, else on its parent (the base model).
    Head: the model's whole prediction head, i.e. the top-level child holding
    ``get_output_embeddings()`` (an MLM head is dense → act → norm → decoder, not just the last
    Linear), plus ``final_logits_bias`` if the model has one, and a ``d_model -> d_head``
    projection on the owner when a Linear head is narrower than the stream.
    """
    import torch.nn as nn

    want_decoder = model_kind(model) == "seq2seq"
    counts = _layer_counts(model.config)
    names = {m: n for n, m in model.named_modules()}
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    embed_path = names.get(embed, "").split(".")
    candidates = []
    for path, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (not want_decoder or "decoder" in path):
            one_class = len({type(m) for m in module}) == 1
            leaves = all(not any(True for _ in m.children()) for m in module)  # per-layer norms, not blocks
            if not leaves and (one_class or len(module) in counts):
                # closeness to the input embeddings tells the language model from a vision/audio tower
                near = next((i for i, (a, b) in enumerate(zip(path.split("."), embed_path)) if a != b), 0)
                candidates.append((len(module) in counts, near, one_class, len(module), -path.count("."), path))
    if not candidates:
        raise UnsupportedModelError(
            f"could not find the transformer blocks of architecture {model.config.model_type!r} "
            f"({type(model).__name__}); please open an issue with its model type"
        )
    blocks = max(candidates)[-1]
    owner_path = blocks.rsplit(".", 1)[0] if "." in blocks else ""
    final_norm = None
    for where in dict.fromkeys([owner_path, owner_path.rsplit(".", 1)[0] if "." in owner_path else ""]):
        holder = model.get_submodule(where)
        name = next((n for n in NORM_NAMES if isinstance(getattr(holder, n, None), nn.Module)), None)
        if name is not None:
            final_norm = f"{where}.{name}" if where else name
            break
    head_module = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_path = names.get(head_module) if head_module is not None else None
    head = None  # get_output_embeddings()
    pre_head: tuple[str, ...] = ()
    if head_path:
        # the whole prediction head: the outermost module holding the output embedding but not the
        # blocks, e.g. BERT's ``cls`` (dense → act → LayerNorm → decoder) or RoBERTa's ``lm_head``
        steps = head_path.split(".")
        prefixes = [".".join(steps[: i + 1]) for i in range(len(steps))]
        root = next(p for p in prefixes if not blocks.startswith(p + "."))
        parent, _, _ = root.rpartition(".")
        if root != head_path:
            head = root
        else:  # a bare Linear head: a sibling prediction head may feed it
            siblings = [
                f"{parent}.{name}" if parent else name
                for name, child in model.get_submodule(parent).named_children()
                if child is not head_module
                and not isinstance(child, nn.Embedding)
                and not any(isinstance(m, nn.ModuleList) for m in child.modules())
                and any(True for _ in child.parameters())
            ]
            if len(siblings) == 1:  # e.g. ModernBERT's ``head`` before ``decoder``, ConvBERT's generator
                pre_head = (siblings[0],)
    # A Linear head narrower than the stream (OPT-350m style) needs the owner's d_model -> d_head projection.
    d_head = getattr(head_module, "in_features", None) if head is None else None
    d_model = residual_width(model.config)
    if not pre_head and d_head is not None and d_model is not None and d_head != d_model:
        for name, child in model.get_submodule(owner_path).named_children():
            if isinstance(child, nn.Linear) and (child.in_features, child.out_features) == (d_model, d_head):
                pre_head = (f"{owner_path}.{name}" if owner_path else name,)
                break
    bias = "final_logits_bias" if hasattr(model, "final_logits_bias") else None
    scale = bool(getattr(model.config, "scale_decoder_outputs", False))  # T5-style rescale flag
    return ArchSpec(blocks, final_norm, pre_head=pre_head, head=head, logits_bias=bias, scale_decoder_output=scale)


def spec_for(model) -> tuple[ArchSpec, bool]:
    """The spec for ``model``: from the registry, else discovered (:func:`discover`). Returns ``(spec, discovered)``.

    Raises:
        UnsupportedModelError: the architecture is in :data:`UNLENSABLE` or :data:`UNLENSABLE_IF`
            (the message says why).
    """
    model_type = model.config.model_type
    why = UNLENSABLE.get(model_type)
    flag, value, reason = UNLENSABLE_IF.get(model_type, (None, None, None))
    if why is None and flag is not None and getattr(model.config, flag, None) == value:
        why = reason  # e.g. FlauBERT with pre_norm=True
    if why is not None:
        raise UnsupportedModelError(
            f"logitscope cannot lens architecture {model_type!r} ({type(model).__name__}): {why}"
        )
    spec = REGISTRY.get(model_type)
    if spec is not None:
        return spec, False
    return discover(model), True
