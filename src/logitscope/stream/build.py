"""Build a streamed model: the skeleton on ``meta``, the small parts resident, the blocks on disk.

:func:`load_streamed` makes the model class from its config with empty weights, then maps every
tensor outside the blocks from the checkpoint's shards (embeddings, final norm, head; zero-copy
when the dtype matches, so of a large embedding table only the rows used are ever read) and hands
the blocks to a :class:`~logitscope.stream.streamer.BlockStreamer`. Nothing is read from disk
beyond the safetensors headers and the resident parts, except that the kernel is asked to read
block 0 into the page cache in the background, for the first forward.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CorruptWeightsError, InputError, UnsupportedModelError
from .budget import check_budget
from .shards import Shards
from .streamer import BlockStreamer


def _names(model: nn.Module) -> dict[int, list[str]]:
    """Every name each parameter/buffer object goes by (tied weights have several)."""
    out: dict[int, list[str]] = {}
    for name, t in [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]:
        out.setdefault(id(t), []).append(name)
    return out


def _checkpoint_key(names: list[str], shards: Shards, prefix: str) -> str | None:
    """The checkpoint's name for a tensor the model calls ``names`` (base-model prefix either way)."""
    for name in names:
        for cand in (name, name.removeprefix(prefix + ".") if prefix else name, f"{prefix}.{name}" if prefix else name):
            if cand in shards:
                return cand
    return None


def _set(model: nn.Module, name: str, value: torch.Tensor, is_param: bool) -> tuple[nn.Module, str]:
    """Set parameter or buffer ``name`` to ``value``; returns its owner module and attribute."""
    mod_path, _, attr = name.rpartition(".")
    module = model.get_submodule(mod_path) if mod_path else model
    if is_param:
        module._parameters[attr] = nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[attr] = value
    return module, attr


def stored_dtype(shards: Shards) -> torch.dtype:
    """The floating dtype most of the checkpoint's bytes are stored in."""
    by: dict[torch.dtype, int] = {}
    for e in shards.entries.values():
        if e.dtype.is_floating_point:
            by[e.dtype] = by.get(e.dtype, 0) + e.nbytes
    return max(by, key=by.get) if by else torch.float32


def load_streamed(
    path: str,
    cls,
    config,
    *,
    dtype: torch.dtype | None,
    device: str = "cpu",
    budget: int | None = None,
    blocks_path: str | None = None,
):
    """A model of class ``cls`` whose blocks stream from the safetensors shards in ``path``.

    Args:
        path: the model directory.
        cls: an ``AutoModel*`` class; config: its config.
        dtype: compute dtype (``None``: the checkpoint's).
        device: compute device (blocks are moved there one at a time).
        budget: bytes allowed (``max_memory``); refused when smaller than the resident parts plus
            one block, and prefetching is off when two blocks do not fit.
        blocks_path: dotted path of the block list (from the registry); found when ``None``.

    Returns:
        The model, in eval mode, with ``model._logitscope_streamer`` set.

    Raises:
        UnsupportedModelError, CorruptWeightsError, InputError (the budget).
    """
    from accelerate import init_empty_weights

    shards = Shards(path)
    dtype = dtype or stored_dtype(shards)
    with init_empty_weights(include_buffers=False):
        model = cls.from_config(config, dtype=dtype)
    model.tie_weights()  # as from_pretrained does (outside init_empty_weights, which re-creates parameters)
    model.eval()
    if blocks_path is None:
        from ..arch.discover import spec_for

        blocks_path = spec_for(model)[0].blocks
    blocks = model.get_submodule(blocks_path)
    if not isinstance(blocks, nn.ModuleList) or not len(blocks):
        raise UnsupportedModelError(f"streaming needs a list of blocks; {blocks_path!r} is {type(blocks).__name__}")
    prefix = getattr(model, "base_model_prefix", "")
    names = _names(model)
    params = {id(p) for p in model.parameters()}
    in_block = {id(t) for b in blocks for t in [*b.parameters(), *b.buffers()]}
    block_index = {id(t): i for i, b in enumerate(blocks) for t in b.parameters()}
    keys: list[dict[str, str]] = [{} for _ in blocks]
    resident: list[tuple[list[str], str, bool]] = []
    missing = []
    for tid, all_names in names.items():
        key = _checkpoint_key(all_names, shards, prefix)
        is_param = tid in params
        if key is None:
            if is_param:
                missing.append(all_names[0])
            continue  # a buffer the model computes itself (rotary frequencies, position ids)
        if tid in block_index:
            i = block_index[tid]
            keys[i][all_names[0].removeprefix(f"{blocks_path}.{i}.")] = key
        elif tid not in in_block or not is_param:
            resident.append((all_names, key, is_param))
    if missing and _converts_at_load(model):
        raise UnsupportedModelError(
            f"{path!r}: transformers converts this checkpoint's tensors at load ({type(model).__name__}: "
            f"renamed or fused, e.g. into {missing[0]!r}), and streaming maps the checkpoint's own tensors to "
            "parameters one to one; load it with offload_folder=DIR (accelerate's offload, which converts), "
            "or whole"
        )
    if missing:
        raise CorruptWeightsError(
            f"the checkpoint in {path!r} lacks {len(missing)} weights the model needs, e.g. {missing[:3]} "
            "(streaming maps checkpoint names to parameters one to one)"
        )
    device = torch.device(device)
    embed = model.get_input_embeddings()
    head = model.get_output_embeddings()
    rows_only = getattr(embed, "weight", None)  # an untied table mapped zero-copy: only the rows used are read
    if rows_only is not None and head is not None and getattr(head, "weight", None) is rows_only:
        rows_only = None
    res_bytes = 0
    warm = []  # mapped resident tensors the streamer reads ahead during the first pass (the head)
    owners: dict[str, list] = {}  # who holds each of them (tied names: several)
    for all_names, key, is_param in resident:
        t = shards.view(key)
        if t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        t = t.to(device)
        e = shards.entries[key]
        copied = t.dtype != e.dtype or device.type != "cpu"
        if copied or rows_only is None or names.get(id(rows_only), [None])[0] not in all_names:
            res_bytes += t.numel() * t.element_size()
            if not copied:
                warm.append(key)
        for name in all_names:  # one tensor for every tied name
            module, attr = _set(model, name, t, is_param)
            if key in warm:
                owners.setdefault(key, []).append((module, attr, is_param))
    streamer = BlockStreamer(blocks, keys, shards, dtype=dtype, device=device, prefetch=True)
    streamer.warm, streamer.warm_owners = warm, owners
    on_disk = shards.nbytes([k for block_keys in keys for k in block_keys.values()])
    streamer.forget = on_disk + res_bytes > _available_memory()  # the cache cannot keep the blocks between passes
    streamer.budget, streamer.resident_bytes = budget, res_bytes  # what batches may use (data.distributed)
    if budget is not None:
        streamer.prefetch = check_budget(budget, resident=res_bytes, block=streamer.block_bytes)
        if not streamer.prefetch and streamer._pool is not None:
            streamer._pool.shutdown()
            streamer._pool = None
    if streamer.prefetch:  # block 0, for the first forward
        streamer.read_ahead(0)
    leftover = [n for n, p in model.named_parameters() if p.is_meta and id(p) not in block_index]
    if leftover:
        raise InputError(f"could not place {leftover[:3]} for streaming")
    model._logitscope_streamer = streamer
    return model


def _available_memory() -> int:
    """Bytes of memory available to this process now (RAM not used, including the page cache)."""
    import psutil

    return int(psutil.virtual_memory().available)


def _converts_at_load(model) -> bool:
    """Whether transformers renames or fuses this model's checkpoint tensors when it loads them
    (its conversion mapping: e.g. Mixtral's per-expert ``w1/w2/w3`` into ``experts.gate_up_proj``)."""
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:  # pragma: no cover - a transformers release without conversions
        return False
    names = (type(model).__name__, getattr(model.config, "model_type", None))
    return any(n and get_checkpoint_conversion_mapping(n) for n in names)
