"""Images and numbers of the worked example in docs/inside.md (demo model, held-out Psalms 72:18).

.venv/bin/python scripts/finetune_demo.py          # once: out/demo-psalms (a few CPU minutes)
.venv/bin/python docs/img/make_inside_images.py    # writes docs/img/inside_*.png, prints the numbers
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import logitscope

HERE = Path(__file__).parent
PROMPT = "Blessed be the LORD God, the God of"  # Psalms 72:18, a held-out chapter; answer " Israel"
ANSWER = " Israel"
TUNED = Path("out/demo-psalms")


def main() -> None:
    demo = logitscope.load("demo", device="cpu", dtype="float32")

    lens = demo.lens(PROMPT, sublayers=True, track=[ANSWER])
    print("| row | top-1 | p(' Israel') | rank |\n|---|---|---|---|")
    for r in range(lens.n_streams):
        top = lens.token(lens.top_ids[r, -1, 0])
        print(
            f"| {lens.layer_names[r]} | {top!r} | {lens.tracked_probs[0, r, -1]:.3f} | {lens.tracked_ranks[0, r, -1] + 1} |"
        )
    lens.plot(HERE / "inside_sublayers.png", metric="prob")

    att = demo.attribute(PROMPT, target=ANSWER)
    p = att.n_positions - 1
    order = np.argsort(-np.abs(att.contributions[:, p]))[:6]
    print(f"\nlogit of {ANSWER!r}: {att.logit[p]:.3f}; bias {att.bias[p]:+.3f}; by kind:", end=" ")
    print({k: round(float(v[p]), 3) for k, v in att.by_kind().items()})
    print("| component | contribution |\n|---|---|")
    for c in order:
        print(f"| {att.components[c]} | {att.contributions[c, p]:+.3f} |")
    att.plot(HERE / "inside_attribution.png", position=-1)

    if not TUNED.exists():
        print(f"\n{TUNED} missing: run scripts/finetune_demo.py first")
        return
    tuned = logitscope.load(str(TUNED), device="cpu", dtype="float32")
    diff = logitscope.compare(demo, tuned, PROMPT)
    print("\n| row | mean KL(demo || psalms) | top-1 agreement | last position: demo / psalms top-1 |")
    print("|---|---|---|---|")
    per = diff.per_layer()
    for r in range(diff.n_streams):
        a, b = diff.token(diff.a_top_ids[r, -1, 0]), diff.token(diff.b_top_ids[r, -1, 0])
        print(f"| {diff.layer_names[r]} | {per['kl'][r]:.3f} | {per['top1_agreement'][r]:.2f} | {a!r} / {b!r} |")
    diff.plot(HERE / "inside_diff.png")
    for name, scope in (("demo", demo), ("psalms", tuned)):
        final = scope.lens(PROMPT, layers=[-1], track=[ANSWER, " Jacob"])
        probs = ", ".join(f"p({t!r}) {final.tracked_probs[k, 0, -1]:.3f}" for k, t in enumerate(final.tracked_tokens))
        print(f"{name}: {probs}")
    prompts = demo.compare(inputs=PROMPT, against="And the LORD spake unto Moses, saying")
    print("\nprompts KL by row:", " ".join(f"{n}:{v:.2f}" for n, v in zip(prompts.layer_names, prompts.kl[:, 0])))


if __name__ == "__main__":
    main()
