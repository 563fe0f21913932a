"""The demo model's lens prompts: keep held-out verses whose answer emerges in late layers.

Used by scripts/train_demo.py; the lens is logitscope's own (exact: the final norm and head
applied to every stream).
"""

from __future__ import annotations

import json
from pathlib import Path

# Candidate logit-lens prompts, all taken from held-out chapters.  After
# training, the ones whose target is top-1 at the last layer but not at the
# embedding layer nor at the first two blocks are written to prompts.json.
CANDIDATE_PROMPTS = [
    {"prompt": "Speak unto the children of", "target": " Israel", "reference": "Numbers 33:51"},
    {"prompt": "And Joseph took an oath of the children of", "target": " Israel", "reference": "Genesis 50:25"},
    {"prompt": "Blessed be the LORD God, the God of", "target": " Israel", "reference": "Psalms 72:18"},
    {
        "prompt": "I was glad when they said unto me, Let us go into the house of the",
        "target": " LORD",
        "reference": "Psalms 122:1",
    },
    {"prompt": "Shall I not visit for these things? saith the", "target": " LORD", "reference": "Jeremiah 5:9"},
    {"prompt": "Wherefore thus saith the LORD God of", "target": " hosts", "reference": "Jeremiah 5:14"},
    {
        "prompt": "For this cause I bow my knees unto the Father of our Lord Jesus",
        "target": " Christ",
        "reference": "Ephesians 3:14",
    },
    {"prompt": "even so must the Son of", "target": " man", "reference": "John 3:14"},
    {"prompt": "Jesus answered and said unto them, Verily I say unto", "target": " you", "reference": "Matthew 21:21"},
    {
        "prompt": "Jesus answered and said unto him, Verily, verily, I say unto",
        "target": " thee",
        "reference": "John 3:3",
    },
    {
        "prompt": "And the LORD spake unto Moses in the plains of Moab by Jordan near",
        "target": " Jericho",
        "reference": "Numbers 33:50",
    },
    {"prompt": "Now it came to pass upon a", "target": " day", "reference": "1 Samuel 14:1"},
    {
        "prompt": "Unto him be glory in the church by Christ Jesus throughout all ages, world without",
        "target": " end",
        "reference": "Ephesians 3:21",
    },
    {
        "prompt": "And blessed be his glorious name for ever: and let the whole earth be filled with his",
        "target": " glory",
        "reference": "Psalms 72:19",
    },
]
# The classic example from a *training* chapter (Genesis 1:3); written to
# prompts.json too (flagged "split": "train") when it shows late emergence.
TRAIN_EXAMPLE_PROMPT = {"prompt": "And God said, Let there be", "target": " light", "reference": "Genesis 1:3"}
MAX_HELDOUT_PROMPTS = 4


def lens_top1(model, tok_hf, prompt):
    """Top-1 token id per lens stream (0 = embeddings, L = the model's own output), by logitscope."""
    import logitscope

    res = logitscope.Scope(model, tok_hf).lens(prompt, top_k=1)
    return res.top_ids[:, -1, 0].tolist()


def write_prompts(model, tok_hf, out: Path):
    """Logit lens on the candidate prompts; write the late-emerging ones to prompts.json.

    Lens layer 0 is the embedding output, layer i the output of block i, the
    last layer is the model's own output.  A prompt qualifies when the target
    is top-1 at the last layer but not at layers 0, 1 or 2.
    """
    n_layers = model.config.num_hidden_layers
    rows, report = [], []
    for split, cand in [("heldout", c) for c in CANDIDATE_PROMPTS] + [("train", TRAIN_EXAMPLE_PROMPT)]:
        tid = tok_hf(cand["target"], add_special_tokens=False).input_ids
        if len(tid) != 1:
            print(f"  skip prompt {cand['prompt']!r}: target {cand['target']!r} is {len(tid)} tokens")
            continue
        top = lens_top1(model, tok_hf, cand["prompt"])
        hit = [t == tid[0] for t in top]
        first = hit.index(True) if any(hit) else None
        stable = next((i for i in range(len(hit)) if all(hit[i:])), None)
        ok = hit[-1] and not any(hit[:3])
        print(
            f"  lens [{split}] {cand['prompt']!r} -> {cand['target']!r}: "
            + " ".join(repr(tok_hf.convert_ids_to_tokens(t)) for t in top)
            + f"  first={first} stable={stable} ok={ok}",
            flush=True,
        )
        report.append(
            {
                "prompt": cand["prompt"],
                "target": cand["target"],
                "split": split,
                "final_top1_correct": hit[-1],
                "first_top1_layer": first,
                "late_emergence": ok,
            }
        )
        if ok:
            rows.append(
                {
                    "prompt": cand["prompt"],
                    "target": cand["target"],
                    "target_id": tid[0],
                    "reference": cand["reference"],
                    "split": split,
                    "first_top1_layer": first,
                    "stable_from_layer": stable,
                    "num_layers": n_layers,
                }
            )
    held = [r for r in rows if r["split"] == "heldout"][:MAX_HELDOUT_PROMPTS]
    chosen = held + [r for r in rows if r["split"] == "train"]
    (out / "prompts.json").write_text(json.dumps(chosen, indent=2) + "\n", encoding="utf-8")
    hr = [r for r in report if r["split"] == "heldout"]
    summary = {
        "layer_convention": "0 = embeddings, i = output of block i (final norm + lm_head applied), "
        f"{n_layers} = model output",
        "heldout_candidates": len(hr),
        "heldout_final_top1_correct": sum(r["final_top1_correct"] for r in hr),
        "heldout_late_emergence": sum(r["late_emergence"] for r in hr),
        "candidates": report,
    }
    print(
        f"  formulaic held-out prompts: final top-1 correct {summary['heldout_final_top1_correct']}/{len(hr)}, "
        f"late emergence {summary['heldout_late_emergence']}/{len(hr)}; wrote {len(chosen)} to prompts.json",
        flush=True,
    )
    return summary
