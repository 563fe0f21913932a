"""How ``load()`` places a model given ``device_map``/``max_memory``/``offload_folder``.

:func:`plan` chooses in memory, accelerate's dispatch or logitscope's streaming;
:func:`check_offload_folder` refuses an unwritable folder before any work.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, OutputError


def check_offload_folder(folder) -> str:
    """Create ``folder`` if needed and check that it can be written; ``OutputError`` naming it if not."""
    import tempfile

    path = Path(os.fspath(folder)).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".logitscope-probe-"):
            pass
    except OSError as err:
        raise OutputError(
            f"the offload folder {str(path)!r} cannot be written ({err.strerror or type(err).__name__}); "
            "give offload_folder= a writable directory"
        ) from None
    return str(path)


def plan(path: str, config, device_map, budget: dict, offload_folder, dtype, device: str) -> str:
    """``"memory"``, ``"accelerate"`` or ``"stream"``: how to load with these memory settings.

    A budget alone (no device map, no offload folder) streams a local safetensors model that does
    not fit in it, and loads one that fits as usual.
    """
    if device_map == "stream":
        return "stream"
    if device_map is not None or offload_folder is not None:
        return "accelerate"
    if not budget:
        return "memory"
    from .budget import fmt

    dev = "cpu" if device == "cpu" else torch_device_index(device)
    limit = budget.get(dev, budget.get("cpu"))
    if limit is None:
        raise InputError(f"max_memory= gives no size for the device the model runs on ({device})")
    if not Path(path).is_dir() or not any(Path(path).glob("*.safetensors")):
        raise InputError(
            f"max_memory={fmt(limit)} without offload_folder= streams a local safetensors checkpoint; "
            f"{path!r} is not one: pass offload_folder= (accelerate's disk offload)"
        )
    from .shards import Shards

    shards = Shards(path)
    itemsize = dtype.itemsize if dtype is not None else None
    size = sum(
        (itemsize or e.dtype.itemsize) * (e.nbytes // e.dtype.itemsize) if e.dtype.is_floating_point else e.nbytes
        for e in shards.entries.values()
    )
    return "memory" if size <= limit else "stream"


def dtype_or_none(torch_dtype):
    return None if isinstance(torch_dtype, str) else torch_dtype


def load_streamed_model(name, path, cls, config, torch_dtype, device, budget: dict):
    """The streamed model for ``load(device_map="stream")`` (or a budget the model does not fit)."""
    import torch

    from .build import load_streamed

    if not Path(path).is_dir():
        raise InputError(f"streaming reads a local model directory; {name!r} is not one (download it first)")
    dtype = dtype_or_none(torch_dtype) or getattr(config, "dtype", None)
    if isinstance(dtype, str):  # a config may spell it "bfloat16"
        dtype = getattr(torch, dtype.removeprefix("torch."), None)
    dtype = dtype if isinstance(dtype, torch.dtype) else None
    dev = "cpu" if str(device) == "cpu" else torch_device_index(device)
    limit = budget.get(dev, budget.get("cpu")) if budget else None
    return load_streamed(path, cls, config, dtype=dtype, device=device, budget=limit)


def torch_device_index(device) -> int:
    """The GPU index of a device string such as ``"cuda:1"`` (0 for ``"cuda"``)."""
    text = str(device)
    return int(text.split(":")[1]) if ":" in text else 0
