"""One check per model class of the architecture sweep: build it small, lens it, compare with the oracle.

Used by ``scripts/arch_sweep.py``. :func:`entries` lists the classes of transformers' auto
mappings, :func:`check` gives one class its :class:`Outcome` (one of :data:`STATUSES`), and
:func:`sweep` checks them in order, each under a time limit.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import arch_small
from sweep_oracle import ATOL, SRC, TGT, compare, decoder_start, forward_inputs, oracle

MAPPINGS = {
    "causal": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "seq2seq": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "masked": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
}
STATUSES = ("exact", "refused", "wrong", "crash", "not-buildable")
TIME_LIMIT_S = 600  # per class; generous: CI machines are shared (most classes take seconds)


@dataclass
class Entry:
    """One model class and every (mapping, model type) that names it."""

    class_name: str
    model_types: list[str] = field(default_factory=list)
    mappings: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    entry: Entry
    status: str
    reason: str = ""
    max_diff: float | None = None
    seconds: float = 0.0


def entries() -> list[Entry]:
    """Every class of the three mappings, in mapping order, each once."""
    from transformers.models.auto import modeling_auto

    by_class: dict[str, Entry] = {}
    for mapping, attr in MAPPINGS.items():
        for model_type, class_name in getattr(modeling_auto, attr).items():
            entry = by_class.setdefault(class_name, Entry(class_name))
            if model_type not in entry.model_types:
                entry.model_types.append(model_type)
            if mapping not in entry.mappings:
                entry.mappings.append(mapping)
    return list(by_class.values())


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = f"{type(err).__name__}: {text[0][:300] if text else ''}"
    cause = err.__cause__
    if cause is not None and text and text[0].rstrip().endswith(":"):  # a config validator: say what it rejected
        line += f" {type(cause).__name__}: {str(cause).strip().splitlines()[0][:200]}"
    return line


def build_and_run(entry: Entry):
    """The small model and its own (positions, vocab) float64 log-probs, from the first config that
    works: each model type naming the class, then its text (decoder) sub-config."""
    import torch

    first = None
    for model_type in entry.model_types:
        for text_only in (False, True):
            try:
                config = arch_small.small_config(model_type, entry.class_name)
                if text_only:
                    if config.get_text_config(decoder=True) is config:
                        continue
                    config = config.get_text_config(decoder=True)
                model = arch_small.build(entry.class_name, config)
                if getattr(config, "is_encoder_decoder", False) and decoder_start(model) is None:
                    # no rule of its own (T5, whose config class drops the field): set it, as checkpoints do
                    model.config.decoder_start_token_id = config.pad_token_id if config.pad_token_id is not None else 0
                with torch.no_grad():
                    full = model(**forward_inputs(model)).logits[0].double().log_softmax(-1)
                if not torch.isfinite(full).all():
                    raise ValueError("the small model's own logits are not finite")
                return model, full
            except TimeoutError:
                raise
            except Exception as err:  # noqa: BLE001 - try the next config; report the first failure
                first = first or err
    raise first


def check(entry: Entry) -> Outcome:
    """Build ``entry`` small and compare every lens row with the truncation oracle."""

    import logitscope
    from logitscope.errors import UnsupportedModelError

    if entry.class_name in arch_small.NOT_BUILDABLE:
        return Outcome(entry, "not-buildable", arch_small.NOT_BUILDABLE[entry.class_name])
    try:
        model, full = build_and_run(entry)
    except TimeoutError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to build or run is reported, not raised
        return Outcome(entry, "not-buildable", _first_line(err))
    try:
        scope = logitscope.Scope(model)
        seq2seq = scope.kind == "seq2seq"
        res = scope.lens(SRC, target=TGT if seq2seq else None, top_k=1)
        parts = scope.parts
    except UnsupportedModelError as err:
        return Outcome(entry, "refused", str(err).split(". Refusing")[0][:300])
    except TimeoutError:
        raise  # the class's time limit (reported by sweep() as too slow), not a crash
    except Exception as err:  # noqa: BLE001
        return Outcome(entry, "crash", _first_line(err))
    stats = (res.entropy, res.kl_to_final, res.target_logprob, res.target_ids)
    n_blocks = parts.n_blocks
    repeated = parts.blocks.taps.calls is not None  # rows are block calls, not list entries
    if full.shape[0] != res.n_positions:
        return Outcome(entry, "wrong", f"lens has {res.n_positions} positions, the model {full.shape[0]}")
    worst, problems = 0.0, []
    for row in range(n_blocks + 1):
        try:
            logp = full if row == n_blocks else oracle(model, parts.spec.blocks, row, repeated=repeated)
        except TimeoutError:
            raise  # the class's time limit, not a failing oracle
        except Exception as err:  # noqa: BLE001 - the cut model fails
            try:  # a model that needs at least one block: row 0 through one pass-through block
                if row != 0:
                    raise
                logp = oracle(model, parts.spec.blocks, 0, identity_block=True)
            except Exception:  # noqa: BLE001 - no oracle: an unverified row counts as wrong
                problems.append(f"row {row} has no oracle (the cut model fails: {_first_line(err)[:120]})")
                continue
        diff = compare(tuple(s[row] for s in stats[:3]) + (stats[3],), logp, full)
        worst = max(worst, diff) if diff == diff else float("nan")
        if not diff <= ATOL:
            problems.append(f"row {row} of {n_blocks} differs by {diff:.3g}")
    found = "discovered" if parts.discovered else "registry"
    detail = f"{found}: blocks {parts.spec.blocks}"
    if problems:
        return Outcome(entry, "wrong", f"{detail}; " + "; ".join(problems), worst)
    return Outcome(entry, "exact", detail, worst)


def _alarm(signum, frame):
    raise TimeoutError(f"over {TIME_LIMIT_S}s")


def sweep(selected: list[str] | None = None, *, log=None) -> list[Outcome]:
    """Check every class (or those whose class name or model type is in ``selected``)."""
    import transformers

    transformers.logging.set_verbosity_error()
    outcomes = []
    use_alarm = hasattr(signal, "SIGALRM")
    old = signal.signal(signal.SIGALRM, _alarm) if use_alarm else None
    try:
        for entry in entries():
            if selected and not ({entry.class_name, *entry.model_types} & set(selected)):
                continue
            t0 = time.perf_counter()
            if use_alarm:
                signal.alarm(TIME_LIMIT_S)
            try:
                outcome = check(entry)
            except TimeoutError as err:
                outcome = Outcome(entry, "not-buildable", f"too slow to check small ({err})")
            finally:
                if use_alarm:
                    signal.alarm(0)
            outcome.seconds = time.perf_counter() - t0
            outcomes.append(outcome)
            if log is not None:
                log(outcome)
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, old)
    return outcomes


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    c = Counter(o.status for o in outcomes)
    return {s: c.get(s, 0) for s in STATUSES}


def to_row(o: Outcome) -> dict:
    """``o`` as one flat JSON-able dict (the ``--jobs`` processes write one per line)."""
    return {**asdict(o.entry), **{k: v for k, v in asdict(o).items() if k != "entry"}}


def from_row(row: dict) -> Outcome:
    """The :class:`Outcome` that :func:`to_row` wrote."""
    entry = Entry(row["class_name"], row["model_types"], row["mappings"])
    return Outcome(entry, row["status"], row["reason"], row["max_diff"], row["seconds"])
