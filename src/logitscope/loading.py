"""Load a model (hub id, local path, or ``"demo"``) with its tokenizer into a :class:`Scope`.

Safe by default: ``trust_remote_code`` is off unless passed, safetensors are preferred, and every
failure becomes one clear :mod:`logitscope.errors` exception.
"""

from __future__ import annotations

import os
from pathlib import Path

from .data.hub import hub_reachable
from .errors import CorruptWeightsError, InputError, LogitscopeError, ModelNotFoundError, RemoteCodeError

DEMO_DIR = Path(__file__).parent / "demo_model"


def resolve_name(name: str | os.PathLike) -> str:
    """Map ``"demo"`` to the bundled model and check that local paths exist."""
    if not isinstance(name, (str, os.PathLike)):
        raise InputError(
            f"the model name must be a hub id, a local directory or 'demo' (a str or path), not {type(name).__name__}"
        )
    text = os.fspath(name)
    if not isinstance(text, str):  # a PathLike of bytes
        raise InputError("the model name must be text, not bytes: decode it first")
    if not text.strip():
        raise ModelNotFoundError("empty model name")
    if text == "demo":
        if not (DEMO_DIR / "config.json").exists():
            raise ModelNotFoundError(f"the bundled demo model is missing from {DEMO_DIR} (broken install?)")
        return str(DEMO_DIR)
    path = Path(text).expanduser()
    # Hub ids are "name" or "org/name"; anything else is meant as a local path.
    looks_local = text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
    if looks_local and not path.exists():
        raise ModelNotFoundError(f"no model at {text!r}: the path does not exist")
    if path.is_file():
        hint = (
            f"give its directory {str(path.parent)!r}" if path.name == "config.json" else "give the model's directory"
        )
        raise ModelNotFoundError(f"{text!r} is a file; a model is a directory holding config.json and weights: {hint}")
    if path.is_dir() and not (path / "config.json").exists():
        raise ModelNotFoundError(f"{text!r} is a directory without a config.json, not a Hugging Face model")
    return str(path) if path.exists() else text


# Files a Hugging Face tokenizer is read from; a folder with none of them has no tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model",
    "spiece.model", "sentencepiece.bpe.model", "special_tokens_map.json", "tekken.json", "vocab.txt",
)  # fmt: skip
# the files that hold a vocabulary (tokenizer_config.json and special_tokens_map.json alone hold none)
VOCAB_FILES = (
    "tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
    "tekken.json",
)  # fmt: skip


def load_tokenizer(tf, path: str, name, common: dict):
    """The tokenizer of a local model folder; ``None`` when it has no tokenizer files.

    Tokenizer files that are present but unreadable or hold no vocabulary are a
    :class:`CorruptWeightsError` naming the file, not a silent "no tokenizer" (transformers would
    otherwise build an empty tokenizer that turns every text into zero tokens).
    """
    import json

    present = [f for f in dict.fromkeys(TOKENIZER_FILES) if (Path(path) / f).is_file()]
    present += sorted(p.name for p in Path(path).glob("*.tiktoken"))
    if not present:
        return None
    shown = ", ".join(present)
    for f in present:
        if f.endswith(".json"):
            try:
                json.loads((Path(path) / f).read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                raise CorruptWeightsError(
                    f"the tokenizer file {f} of {name!r} is not valid JSON ({_first_line(err)}); fix or remove it "
                    "(without tokenizer files the model still works with token ids)"
                ) from None
    try:
        tokenizer = tf.AutoTokenizer.from_pretrained(path, **common)
    except Exception as err:  # noqa: BLE001 - transformers raises many types for unreadable files
        why = f"{type(err).__name__}: {_first_line(err)}"
        vocab = [f for f in present if f in VOCAB_FILES or f.endswith(".tiktoken")]
        if not vocab or "instantiate the backend tokenizer" in why:  # (the files say it, whatever the wording)
            why = "they hold no vocabulary (e.g. tokenizer.json, or vocab.json and merges.txt, is missing)"
        raise CorruptWeightsError(
            f"cannot read the tokenizer of {name!r} ({shown}): {why}; fix or remove these files "
            "(without tokenizer files the model still works with token ids)"
        ) from None
    if len(tokenizer) == 0 or not tokenizer("a", add_special_tokens=False)["input_ids"]:
        raise CorruptWeightsError(
            f"the tokenizer files of {name!r} ({shown}) hold no vocabulary: every text would be zero tokens; "
            "add the missing files (e.g. tokenizer.json, or vocab.json and merges.txt) or remove them "
            "(without tokenizer files the model still works with token ids)"
        )
    return tokenizer


def _extra_blocks(model, unexpected) -> list[int]:
    """Block indices (0-based) that the checkpoint holds weights for but the model built from
    config.json has no block for: a key ``<blocks>.N.<rest>`` whose ``<blocks>.0.<rest>`` exists."""
    import re

    names = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    extra = set()
    for key in unexpected:
        m = re.search(r"\.(\d+)\.", key)  # the first index in a path is the block's
        if m and f"{key[: m.start()]}.0.{key[m.end() :]}" in names:
            extra.add(int(m.group(1)))
    return sorted(extra)


def _mismatch(cls, path, config, kwargs: dict, name) -> str:
    """Name the tensors whose shapes differ from what config.json builds (loads again, allowing them)."""
    try:
        _, info = cls.from_pretrained(path, config=config, **dict(kwargs, ignore_mismatched_sizes=True))
        found = sorted(info.get("mismatched_keys") or [])
    except Exception:  # noqa: BLE001 - only the message is at stake
        found = []
    if not found:
        return f"the weights of {name!r} do not have the shapes its config.json describes"
    shown = "; ".join(f"{k} is {tuple(a)} in the checkpoint, {tuple(b)} in the model" for k, a, b in found[:3])
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return (
        f"{len(found)} weight(s) of {name!r} do not have the shape its config.json describes: {shown}{more}; "
        "the checkpoint and config.json do not belong together"
    )


def _hub_tokenizer(tf, path: str, common: dict):
    """The tokenizer of a hub model, or ``None`` when it has none (it still works with token ids)."""
    try:
        return tf.AutoTokenizer.from_pretrained(path, **common)
    except Exception:  # noqa: BLE001
        return None


def _transformers():
    """``import transformers``, without the ``TqdmWarning: IProgress not found`` that its progress-bar
    module prints in a notebook without ipywidgets (logitscope turns those bars off anyway)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import transformers

    return transformers


def _in_cache(repo_id: str, revision: str | None) -> bool:
    """Whether the local Hugging Face cache holds ``repo_id``'s ``config.json`` (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - an id the hub would reject is not in the cache either
        return False
    return isinstance(found, str)


DEVICE_MAP_NAMES = ("auto", "balanced", "balanced_low_0", "sequential", "stream")


def check_device_map(device_map) -> None:
    """``None``, a dict, one of :data:`DEVICE_MAP_NAMES` or a torch device name; else ``InputError``.

    ``"stream"`` is logitscope's own: blocks read one at a time from the safetensors shards
    (:mod:`logitscope.stream`); the others are accelerate's.
    """
    if device_map is None or isinstance(device_map, dict) or device_map in DEVICE_MAP_NAMES:
        return
    if isinstance(device_map, str):
        import torch

        try:
            torch.device(device_map)
            return
        except (RuntimeError, TypeError):
            pass
    raise InputError(
        f"unknown device_map {device_map!r}: use {', '.join(DEVICE_MAP_NAMES)}, a device such as 'cuda:0', or a dict"
    )


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def pick_device(device: str | None) -> str:
    """``"auto"`` → cuda, then mps, then cpu; anything else must name an available device."""
    import torch

    if device not in (None, "auto"):
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise InputError(f"unknown device {device!r}: {err}") from None
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        }.get(dev.type, True)
        if not available:
            raise InputError(f"device {device!r} is not available on this machine")
        return str(dev)

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _model_class(config):
    import transformers as tf

    if getattr(config, "is_encoder_decoder", False):
        return tf.AutoModelForSeq2SeqLM
    archs = getattr(config, "architectures", None) or []
    if archs and not any("LM" in a or "For" in a for a in archs):
        return tf.AutoModel  # a bare encoder checkpoint (e.g. sentence embeddings): no head to load
    if any("MaskedLM" in a or "ForPreTraining" in a for a in archs):
        return tf.AutoModelForMaskedLM
    if any("CausalLM" in a or "LMHeadModel" in a for a in archs):
        return tf.AutoModelForCausalLM
    if config.model_type in tf.models.auto.modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        if not archs or config.model_type not in tf.models.auto.modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return tf.AutoModelForCausalLM
    if config.model_type in tf.models.auto.modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return tf.AutoModelForMaskedLM
    return tf.AutoModel


def load(
    name: str | os.PathLike,
    *,
    device: str | None = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    device_map: str | dict | None = None,
    max_memory: str | int | dict | None = None,
    offload_folder: str | os.PathLike | None = None,
    self_check: bool = True,
    chunk_size: int | None = None,
):
    """Load a model and tokenizer into a :class:`~logitscope.scope.Scope`.

    Args:
        name: hub id, local directory, or ``"demo"`` for the bundled model.
        device: ``"auto"`` (cuda → mps → cpu), or any torch device string.
        dtype: ``"auto"`` (the checkpoint's dtype) or a torch dtype name such as ``"bfloat16"``.
        trust_remote_code: allow the model's own Python code to run. Off unless asked.
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` with accelerate) instead of
            ``device``, for models larger than one device; ``"stream"``: logitscope's streamed
            mode (blocks read one at a time from the safetensors shards, next one prefetched).
        max_memory: a size (``"4GiB"``, bytes) or accelerate's per-device dict. Alone, a local
            safetensors model larger than it is streamed (``device_map="stream"``); with
            ``device_map``/``offload_folder`` it goes to accelerate (default map ``"auto"``).
        offload_folder: where accelerate may offload weights to disk (checked writable first).
        self_check: verify that the lens's last row reproduces the model's own logits.

    Raises:
        ModelNotFoundError, CorruptWeightsError, RemoteCodeError, UnsupportedModelError.
        A checkpoint with no LM head (e.g. a sentence-embedding BERT) loads as an encoder:
        embeddings work, lens/logits raise ``NoLMHeadError``.
    """
    path = resolve_name(name)  # the quick checks come before the heavy imports
    check_device_map(device_map)
    from .stream.budget import parse_max_memory

    budget = parse_max_memory(max_memory)
    if offload_folder is not None:
        from .stream.plan import check_offload_folder

        offload_folder = check_offload_folder(offload_folder)
    common = {"trust_remote_code": trust_remote_code, "revision": revision}
    local = Path(path).is_dir()
    if not local and not hub_reachable():  # fail in ~2 s, not after the hub client's retries
        common["local_files_only"] = True  # a cached copy still loads offline
        if not _in_cache(path, revision):
            raise ModelNotFoundError(
                f"model {name!r} not found: it is not a local directory, not in the Hugging Face cache, "
                "and the hub cannot be reached (offline?)"
            )
    import torch

    tf = _transformers()

    from .scope import Scope

    try:
        config = tf.AutoConfig.from_pretrained(path, **common)
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise RemoteCodeError(
                f"{name!r} needs its own Python code; pass trust_remote_code=True only if you trust it"
            ) from None
        raise ModelNotFoundError(f"cannot read the config of {name!r}: {_first_line(err)}") from None
    except (OSError, KeyError, TypeError) as err:  # TypeError: a config.json that is no object (transformers 5.0)
        if local:
            raise ModelNotFoundError(
                f"cannot read {str(Path(path) / 'config.json')!r}: {type(err).__name__}: {_first_line(err)}"
            ) from None
        if common.get("local_files_only"):
            raise ModelNotFoundError(
                f"model {name!r} not found: it is not a local directory, not in the Hugging Face cache, "
                "and the hub cannot be reached (offline?)"
            ) from None
        raise ModelNotFoundError(
            f"model {name!r} not found: not a local directory and not in the Hugging Face cache "
            f"({type(err).__name__}: {_first_line(err)})"
        ) from None
    torch_dtype = dtype if dtype == "auto" else getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(torch_dtype, (str, torch.dtype)) or (
        isinstance(torch_dtype, torch.dtype) and not torch_dtype.is_floating_point
    ):
        raise InputError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    from .stream.plan import dtype_or_none, load_streamed_model
    from .stream.plan import plan as memory_plan

    plan = memory_plan(
        path, config, device_map, budget, offload_folder, dtype_or_none(torch_dtype), pick_device(device)
    )
    device = pick_device(device) if plan != "accelerate" else device
    cls = _model_class(config)
    if plan == "stream":
        model = load_streamed_model(name, path, cls, config, torch_dtype, device, budget)
        tokenizer = load_tokenizer(tf, path, name, common)
        return Scope(model, tokenizer, name=str(name), self_check=self_check, chunk_size=chunk_size)
    kwargs = dict(common, dtype=torch_dtype, output_loading_info=True)
    if plan == "accelerate":
        kwargs["device_map"] = device_map or "auto"
        if budget:
            kwargs["max_memory"] = budget
        if offload_folder is not None:
            kwargs["offload_folder"] = offload_folder
    bars = tf.utils.logging.is_progress_bar_enabled()
    tf.utils.logging.disable_progress_bar()
    verbosity = tf.utils.logging.get_verbosity()
    tf.utils.logging.set_verbosity_error()  # the load report is ours to give, as an error
    try:
        model, info = cls.from_pretrained(path, config=config, **kwargs)
    except LogitscopeError:
        raise
    except Exception as err:  # transformers/safetensors raise many types for unreadable files
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "trust_remote_code" in msg:
            raise RemoteCodeError(f"{name!r} needs trust_remote_code=True") from None
        if isinstance(err, OSError) and "does not appear to have" in msg:
            raise ModelNotFoundError(f"{name!r} has no weights file: {msg}") from None
        if "ignore_mismatched_sizes" in msg:  # transformers points at a report it printed (we silenced it)
            raise CorruptWeightsError(_mismatch(cls, path, config, kwargs, name)) from None
        raise CorruptWeightsError(f"cannot read the weights of {name!r}: {type(err).__name__}: {msg}") from None
    finally:  # leave the caller's transformers settings as they were
        tf.utils.logging.set_verbosity(verbosity)
        if bars:
            tf.utils.logging.enable_progress_bar()
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
    base = getattr(model, "base_model_prefix", "")
    head_missing = [k for k in missing if base and not k.startswith(base + ".")]
    body_missing = [k for k in missing if k not in head_missing]
    if body_missing:
        raise CorruptWeightsError(
            f"the checkpoint of {name!r} lacks {len(body_missing)} weights, e.g. {body_missing[:3]}"
        )
    extra = _extra_blocks(model, info.get("unexpected_keys") or [])
    if extra:
        raise CorruptWeightsError(
            f"the checkpoint of {name!r} has more blocks than its config.json declares: weights for block(s) "
            f"{', '.join(map(str, extra[:5]))}{' ...' if len(extra) > 5 else ''} would be ignored and the model "
            "silently cut; fix the layer count in config.json"
        )
    if head_missing:  # no LM head in the checkpoint: keep only the encoder, never a random head
        model = getattr(model, base)
    if plan != "accelerate":
        model = model.to(device)
    else:
        _check_dispatched(tf, model, name, kwargs)
    tokenizer = load_tokenizer(tf, path, name, common) if local else _hub_tokenizer(tf, path, common)
    return Scope(model, tokenizer, name=str(name), self_check=self_check, chunk_size=chunk_size)


def _check_dispatched(tf, model, name, kwargs) -> None:
    """Refuse an accelerate load that left weights on ``meta`` with no offload hook to bring them in.

    transformers 5.0 (through 5.8 at least) dispatches (attaches accelerate's hooks) only a device map that
    names more than one device: when ``max_memory`` sends every module to disk, the model comes back undispatched.
    """
    from .arch.weights import unloadable_meta

    meta = unloadable_meta(model)
    if meta:
        raise InputError(
            f"device_map={kwargs.get('device_map')!r}, max_memory={kwargs.get('max_memory')!r} sends every module of "
            f"{name!r} to disk, and transformers "
            f"{tf.__version__} does not dispatch a model offloaded wholly to disk ({len(meta)} weights left on "
            "'meta'): allow room for at least one module in memory, use device_map='stream', or upgrade transformers"
        )
