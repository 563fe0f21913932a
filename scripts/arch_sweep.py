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

The parts, one concept each: ``arch_small.py`` builds a class small, ``sweep_oracle.py`` is the
truncation oracle and the row comparison, ``sweep_check.py`` checks one class and sweeps them all,
``sweep_report.py`` writes the summary and docs/architectures.md. This file is the command line
(and ``--jobs``); it re-exports the names the tests use (``sweep``, ``check``, ``entries``, ...).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import arch_small  # noqa: E402, F401 - the tests reach it as sys.modules["arch_small"]
from sweep_check import (  # noqa: E402, F401 - re-exported: tests/arch/test_arch_sweep.py uses them
    MAPPINGS,
    STATUSES,
    TIME_LIMIT_S,
    Entry,
    Outcome,
    build_and_run,
    check,
    counts,
    entries,
    from_row,
    sweep,
    to_row,
)
from sweep_oracle import ATOL, SEQ, SRC, TGT, compare, decoder_start, forward_inputs, oracle  # noqa: E402, F401
from sweep_report import ROOT, markdown, summary, write_docs  # noqa: E402, F401


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
            o = from_row(json.loads(line))
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
                    f.write(json.dumps(to_row(o)) + "\n")
                log(o)

        outcomes = sweep(args.only, log=log)
    seconds = time.perf_counter() - t0
    print(f"{summary(outcomes)} in {seconds:.0f} s")
    if args.write_docs:
        write_docs(outcomes, seconds)
    return 1 if counts(outcomes)["wrong"] or counts(outcomes)["crash"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
