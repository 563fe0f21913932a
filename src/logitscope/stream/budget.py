"""Memory budgets: ``max_memory`` as given by the user, in bytes, and what streaming needs.

``max_memory`` is one size for the whole run (``"4GiB"``, ``"500MB"``, an int of bytes) or
accelerate's per-device dict (``{0: "20GiB", "cpu": "4GiB"}``).
"""

from __future__ import annotations

import re

from ..errors import InputError

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(value) -> int:
    """Bytes of ``"4GiB"``, ``"1.5 GB"``, ``"512MiB"`` or an int; ``InputError`` otherwise."""
    if isinstance(value, bool):
        raise InputError(f"a memory size must be a number of bytes or a string like '4GiB', not {value!r}")
    if isinstance(value, int) and value > 0:
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?I?B?)\s*", str(value).upper())
    if m is None or float(m.group(1)) <= 0 or m.group(2) not in _UNITS:
        raise InputError(f"cannot read the memory size {value!r}: use e.g. '4GiB', '500MB' or a number of bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_max_memory(max_memory) -> dict:
    """accelerate's ``{device: bytes}`` from a size or a dict (keys: ints, ``"cpu"``, ``"cuda:0"``...)."""
    if max_memory is None:
        return {}
    if isinstance(max_memory, dict):
        if not max_memory:
            raise InputError("max_memory= is an empty dict; give a size per device, e.g. {'cpu': '4GiB'}")
        out = {}
        for key, size in max_memory.items():
            if isinstance(key, str) and key.startswith("cuda:") and key[5:].isdigit():
                key = int(key[5:])
            elif isinstance(key, str) and key.isdigit():
                key = int(key)
            if not (isinstance(key, int) or key in ("cpu", "mps", "disk")):
                raise InputError(f"unknown device {key!r} in max_memory=; use GPU indices, 'cpu' or 'mps'")
            out[key] = parse_size(size)
        return out
    size = parse_size(max_memory)
    import torch

    out = {i: size for i in range(torch.cuda.device_count())}
    out["cpu"] = size
    return out


def fmt(n: int) -> str:
    """A byte count as e.g. ``'1.50 GiB'``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def check_budget(budget: int, *, resident: int, block: int) -> bool:
    """Whether a streamed run in ``budget`` bytes can prefetch (two blocks) or must go one at a time.

    Raises:
        InputError: the budget cannot hold the resident parts (embeddings rows, norms, head)
            plus one block.
    """
    if budget < resident + block:
        raise InputError(
            f"max_memory={fmt(budget)} is smaller than one block ({fmt(block)}) plus the parts kept in memory "
            f"(head, norms, embeddings: {fmt(resident)}); at least {fmt(resident + block)} is needed"
        )
    return budget >= resident + 2 * block
