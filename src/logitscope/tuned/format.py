"""The tuned-lens 0.2.0 on-disk format: read it (published lenses load here) and write it (ours load there).

A lens is a folder of two files::

    config.json   {"base_model_name_or_path", "d_model", "num_hidden_layers", "bias",
                   "base_model_revision", "unembed_hash", "lens_type": "linear_tuned_lens"}
    params.pt     torch.save of the translators' state dict:
                  "{l}.weight" (d_model, d_model) and "{l}.bias" (d_model,), l = 0 .. L-1

``params.pt`` is read with ``torch.load(weights_only=True)``: no pickled code runs. Older
published configs misspell ``unembed_hash`` as ``unemebd_hash``; both are read, the correct
spelling is written. Unknown config keys are ignored (as tuned-lens does).

**Unembedding hash.** tuned-lens identifies the model a lens belongs to by a hash of its
unembedding matrix ``W_U`` (vocab, d_model) — the weight of the head's ``nn.Linear`` — computed
as the SHA-256 of the UTF-8 text numpy prints for ``W_U`` at one decimal of precision with
numpy's default print options (so large matrices print summarised: their first and last three
rows and columns). :func:`unembed_hash` computes the same string, so hashes agree in both
directions. It is a cheap fingerprint, not a checksum: it sees only the corners of ``W_U`` at
0.1 resolution; the block count and stream width are checked exactly.
"""

from __future__ import annotations

import json
import warnings
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CorruptWeightsError, InputError
from ..io.atomic import atomic_dir

LENS_TYPE = "linear_tuned_lens"


@dataclass
class TunedLensConfig:
    """The ``config.json`` of a tuned-lens folder, field for field (tuned-lens 0.2.0).

    Attributes:
        base_model_name_or_path: the model the lens was trained for.
        d_model: width of the residual stream.
        num_hidden_layers: number of blocks ``L`` (= number of translators).
        bias: whether the translators have a bias.
        base_model_revision: the model's revision, if known.
        unembed_hash: :func:`~logitscope.tuned.format.unembed_hash` of the model's head.
        lens_type: always ``"linear_tuned_lens"``.
    """

    base_model_name_or_path: str
    d_model: int
    num_hidden_layers: int
    bias: bool = True
    base_model_revision: str | None = None
    unembed_hash: str | None = None
    lens_type: str = LENS_TYPE

    def to_dict(self) -> dict:
        return asdict(self)


DEMO_DIR = Path(__file__).parent / "demo"
CONFIG_FILE = "config.json"
PARAMS_FILE = "params.pt"
REQUIRED_KEYS = ("base_model_name_or_path", "d_model", "num_hidden_layers")
_PRINT_DEFAULTS = dict(
    precision=1, threshold=1000, edgeitems=3, linewidth=75, suppress=False, nanstr="nan", infstr="inf",
    sign="-", floatmode="maxprec", legacy=False,
)  # fmt: skip
_hash_cache: dict[int, tuple] = {}  # id(weight) -> (weakref, version, digest)


def unembed_hash(parts) -> str:
    """tuned-lens's fingerprint of the model's unembedding matrix (see the module docstring)."""
    import hashlib

    weight = parts.head_weight
    if weight.is_meta:  # an offloaded head: hash the weights its offload hook loads
        with parts.materialized():
            return unembed_hash(parts)
    cached = _hash_cache.get(id(weight))
    if cached is not None and cached[0]() is weight and cached[1] == weight._version:
        return cached[2]
    w = weight.detach()
    array = (
        w.numpy() if w.device.type == "cpu" and w.dtype in (torch.float32, torch.float16) else w.float().cpu().numpy()
    )
    with np.printoptions(**_PRINT_DEFAULTS):
        text = np.array_str(array, precision=1)
    digest = hashlib.sha256(text.encode()).hexdigest()
    _hash_cache[id(weight)] = (weakref.ref(weight), weight._version, digest)
    return digest


def lens_dir(path) -> Path:
    """``"demo"`` → the lens shipped for the demo model; anything else → that folder."""
    if isinstance(path, str) and path == "demo":
        if not (DEMO_DIR / PARAMS_FILE).exists():
            raise InputError(f"the demo tuned lens is missing from {DEMO_DIR} (broken install?)")
        return DEMO_DIR
    return Path(path).expanduser()


def write_lens_dir(
    path, config: TunedLensConfig, state: dict[str, torch.Tensor], extra: dict[str, str] | None = None
) -> Path:
    """Write a tuned-lens folder (``config.json`` + ``params.pt``, and ``extra`` files) at ``path``, atomically."""
    dest = Path(path).expanduser()
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest} exists and is not a directory")
    with atomic_dir(dest) as tmp:
        torch.save(state, tmp / PARAMS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text)
    return dest


def read_config(folder: Path) -> TunedLensConfig:
    """Parse ``config.json``; a missing file, bad JSON or a missing/ill-typed key is one clear error."""
    file = folder / CONFIG_FILE
    if not folder.exists():
        raise InputError(f"no tuned lens at {folder}: the folder does not exist")
    if not file.is_file():
        raise InputError(f"{folder} is not a tuned lens: it has no {CONFIG_FILE}")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptWeightsError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise CorruptWeightsError(f"{file}: expected a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise CorruptWeightsError(
            f"{file}: missing key {', '.join(map(repr, missing))} (a tuned-lens config needs {', '.join(REQUIRED_KEYS)})"
        )
    for key in ("d_model", "num_hidden_layers"):
        if isinstance(raw[key], bool) or not isinstance(raw[key], int) or raw[key] < 1:
            raise CorruptWeightsError(f"{file}: {key!r} must be a positive integer, not {raw[key]!r}")
    lens_type = raw.get("lens_type", LENS_TYPE)
    if lens_type != LENS_TYPE:
        raise CorruptWeightsError(f"{file}: lens_type {lens_type!r} is not supported (only {LENS_TYPE!r})")
    bias = raw.get("bias", True)
    if not isinstance(bias, bool):
        raise CorruptWeightsError(f"{file}: 'bias' must be true or false, not {bias!r}")
    digest = raw.get("unembed_hash", raw.get("unemebd_hash"))  # old configs misspell it
    return TunedLensConfig(
        base_model_name_or_path=str(raw["base_model_name_or_path"]),
        d_model=raw["d_model"],
        num_hidden_layers=raw["num_hidden_layers"],
        bias=bias,
        base_model_revision=raw.get("base_model_revision"),
        unembed_hash=str(digest) if digest else None,
    )


def read_params(file: Path, config: TunedLensConfig) -> dict[str, torch.Tensor]:
    """Load ``params.pt`` without running pickled code and check every key and shape against ``config``."""
    if not file.is_file():
        raise InputError(f"{file.parent} is not a tuned lens: it has no {PARAMS_FILE}")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged or hostile file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorruptWeightsError(f"{file}: cannot read the lens parameters ({first[:200]})") from None
    if not isinstance(state, dict):
        raise CorruptWeightsError(f"{file}: expected a state dict, found {type(state).__name__}")
    d, L = config.d_model, config.num_hidden_layers
    want = {f"{i}.weight": (d, d) for i in range(L)}
    if config.bias:
        want.update({f"{i}.bias": (d,) for i in range(L)})
    if set(state) != set(want):
        extra, missing = sorted(set(state) - set(want)), sorted(set(want) - set(state))
        detail = "; ".join(
            s for s in (f"missing {missing[:4]}" if missing else "", f"unexpected {extra[:4]}" if extra else "") if s
        )
        raise CorruptWeightsError(f"{file}: keys do not match a lens with {L} layers of width {d} ({detail})")
    for key, shape in want.items():
        t = state[key]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or not t.is_floating_point():
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise CorruptWeightsError(f"{file}: {key} should be a float tensor of shape {shape}, found {got}")
        if not bool(torch.isfinite(t).all()):
            raise CorruptWeightsError(f"{file}: {key} holds NaN or inf")
    return state
