"""Sweep every transformers LM architecture: is each lens row the model cut after that block?

Walks transformers' own ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``, ``MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES``
and ``MODEL_FOR_MASKED_LM_MAPPING_NAMES`` (one check per model *class*: several model types share a
class, and one model type can name different classes in different mappings), builds each small
(``scripts/arch_small.py``), runs ``logitscope.Scope(model).lens(...)`` and compares every row with
the truncation oracle: a deep copy of the model whose block list keeps only its first ``l`` blocks.

Each class ends in one status:

* ``exact``: every row's entropy, KL to the final row and target log-prob match the oracle.
* ``refused``: logitscope raised ``UnsupportedModelError`` (safe, but the user gets nothing).
* ``wrong``: some row differs from the oracle (the worst outcome: a wrong number).
* ``crash``: logitscope raised anything else.
* ``not-buildable``: the harness could not build or run the model small (the reason is kept).

Usage::

    python scripts/arch_sweep.py                 # print the table and the counts
    python scripts/arch_sweep.py --only llama t5 # a few model types or class names
    python scripts/arch_sweep.py --write-docs    # also regenerate docs/architectures.md
    python scripts/arch_sweep.py --jobs 4        # the classes split over 4 processes
"""

from __future__ import annotations

import argparse
import copy
import inspect
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import arch_small  # noqa: E402

MAPPINGS = {
    "causal": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "seq2seq": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "masked": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
}
STATUSES = ("exact", "refused", "wrong", "crash", "not-buildable")
SEQ = 6
SRC = [(7 + 13 * i) % arch_small.V for i in range(SEQ)]  # avoids the special ids 0..6
TGT = [14, 52, 9, 30]
ATOL = 1e-4  # on entropy, KL and log-probs (nats); float32 model, float64 oracle
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


def summary(outcomes: list[Outcome]) -> str:
    c = counts(outcomes)
    buildable = len(outcomes) - c["not-buildable"]
    share = c["refused"] / buildable if buildable else 0.0
    parts = ", ".join(f"{n} {s}" for s, n in c.items())
    return f"{len(outcomes)} classes: {parts}; refused {share:.1%} of {buildable} buildable"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(outcomes: list[Outcome], seconds: float) -> str:
    """docs/architectures.md: the counts, then one row per class grouped by status."""
    import transformers

    import logitscope

    lines = [
        "# Architectures",
        "",
        "<!-- generated by `python scripts/arch_sweep.py --write-docs`; do not edit by hand -->",
        "",
        "Every class in transformers' causal-LM, seq2seq-LM and masked-LM auto mappings, built small "
        f"({arch_small.LAYERS} blocks, d_model {arch_small.D}, vocab {arch_small.V}, every parameter perturbed) "
        f"and run through `Scope(model).lens(...)` on {SEQ} tokens. Each lens row is compared with the "
        "model itself cut after that block (a deep copy whose block list keeps its first l blocks): "
        f"entropy, KL to the final row and target log-prob within {ATOL:g} nats.",
        "",
        f"transformers {transformers.__version__}, logitscope {logitscope.__version__}; "
        f"sweep time {seconds:.0f} s. **{summary(outcomes)}.**",
        "",
        "| status | meaning |",
        "|---|---|",
        "| exact | every row equals the truncated model |",
        "| refused | `UnsupportedModelError` at load, with the reason (safe: no numbers rather than wrong ones) |",
        "| wrong | some row differs from the truncated model |",
        "| crash | logitscope raised something other than a refusal |",
        "| not-buildable | the harness cannot build or run this class small; the reason is given |",
        "",
    ]
    for status in STATUSES:
        group = sorted((o for o in outcomes if o.status == status), key=lambda o: o.entry.class_name.lower())
        lines += [f"## {status} ({len(group)})", ""]
        if not group:
            lines += ["None.", ""]
            continue
        lines += ["| class | model types | mappings | detail |", "|---|---|---|---|"]
        for o in group:
            e = o.entry
            lines.append(
                f"| {e.class_name} | {', '.join(e.model_types)} | {', '.join(e.mappings)} | {_cell(o.reason)} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_docs(outcomes: list[Outcome], seconds: float) -> Path:
    """Write docs/architectures.md atomically; returns its path."""
    from logitscope.io.atomic import atomic_file

    path = ROOT / "docs" / "architectures.md"
    with atomic_file(path) as tmp:
        tmp.write_text(markdown(outcomes, seconds) + "\n")
    return path


def _row(o: Outcome) -> dict:
    return {**asdict(o.entry), **{k: v for k, v in asdict(o).items() if k != "entry"}}


def _outcome(row: dict) -> Outcome:
    entry = Entry(row["class_name"], row["model_types"], row["mappings"])
    return Outcome(entry, row["status"], row["reason"], row["max_diff"], row["seconds"])


def sweep_in_processes(jobs: int, selected: list[str] | None = None, *, folder: Path) -> list[Outcome]:
    """:func:`sweep` split over ``jobs`` processes (classes dealt round-robin), outcomes in sweep order.

    Each process appends one JSON line per class to ``folder/<i>.jsonl`` as it goes.
    """
    import json
    import subprocess

    names = [e.class_name for e in entries() if not selected or {e.class_name, *e.model_types} & set(selected)]
    folder.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(jobs):
        out = folder / f"{i}.jsonl"
        out.write_text("")
        cmd = [sys.executable, __file__, "--dump", str(out), "--only", *names[i::jobs]]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    for proc in procs:
        proc.wait()
    by_class = {}
    for i in range(jobs):
        for line in (folder / f"{i}.jsonl").read_text().splitlines():
            o = _outcome(json.loads(line))
            by_class[o.entry.class_name] = o
    return [by_class[n] for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="model types or class names to check")
    parser.add_argument("--write-docs", action="store_true", help="regenerate docs/architectures.md")
    parser.add_argument("--jobs", type=int, default=1, help="check the classes in this many processes")
    parser.add_argument("--jobs-dir", help="(--jobs) where the processes write their outcomes (default: a temp dir)")
    parser.add_argument("--dump", help=argparse.SUPPRESS)  # (--jobs) append each outcome as a JSON line here
    args = parser.parse_args(argv)

    def log(o: Outcome) -> None:
        diff = f" {o.max_diff:.1e}" if o.max_diff is not None else ""
        print(f"{o.status:13} {o.seconds:5.1f}s {o.entry.class_name:45}{diff} {o.reason[:150]}", flush=True)

    t0 = time.perf_counter()
    if args.jobs > 1:
        import tempfile

        folder = Path(args.jobs_dir or tempfile.mkdtemp(prefix="arch_sweep-"))
        outcomes = sweep_in_processes(args.jobs, args.only, folder=folder)
        for o in outcomes:
            log(o)
    else:
        if args.dump:
            import json

            def log(o: Outcome, log=log) -> None:  # noqa: F811 - also append it to the dump
                with open(args.dump, "a") as f:
                    f.write(json.dumps(_row(o)) + "\n")
                log(o)

        outcomes = sweep(args.only, log=log)
    seconds = time.perf_counter() - t0
    print(f"{summary(outcomes)} in {seconds:.0f} s")
    if args.write_docs:
        write_docs(outcomes, seconds)
    return 1 if counts(outcomes)["wrong"] or counts(outcomes)["crash"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
