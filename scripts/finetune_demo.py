"""Fine-tune the bundled demo model on one book of the King James Bible (for the lens diff example).

    .venv/bin/python scripts/finetune_demo.py                  # Psalms, 300 steps -> out/demo-psalms
    .venv/bin/logitscope diff demo out/demo-psalms "Blessed is the man that walketh not in the counsel of the"

The corpus is Debian's ``bible-kjv`` (``apt-get install -y bible-kjv``; ``bible`` prints it), parsed
by ``scripts/kjv_corpus.py``. Only the book's *training* chapters are used (the demo's held-out
split, every 50th chapter, stays unseen). Full fine-tuning with AdamW, a short warm-up and cosine
decay, random windows of ``--seq-len + 1`` tokens; a few CPU minutes with the defaults. The copy
(~30 MB) goes to ``out/`` (git-ignored), never into the package; ``finetune_log.json`` beside it
records the settings, the loss curve, and held-out losses before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from kjv_corpus import chapter_text, load_corpus_text, parse_chapters, split_chapters  # noqa: E402


def encode(tok, chapters) -> torch.Tensor:
    """One token stream: EOS, chapter, EOS, chapter, ..."""
    ids: list[int] = []
    for c in chapters:
        ids.append(tok.eos_token_id)
        ids.extend(tok(chapter_text(c[2]), add_special_tokens=False, verbose=False)["input_ids"])
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def mean_loss(model, stream: torch.Tensor, seq_len: int, max_windows: int = 64) -> float:
    """Mean next-token cross-entropy over consecutive windows of ``stream`` (nats)."""
    total, n = 0.0, 0
    for i in range(0, min(len(stream) - 1, max_windows * seq_len), seq_len):
        x = stream[i : i + seq_len + 1]
        if len(x) < 2:
            break
        logits = model(input_ids=x[None, :-1]).logits[0]
        total += float(torch.nn.functional.cross_entropy(logits, x[1:], reduction="sum"))
        n += len(x) - 1
    return total / n


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--book", default="Psalms", help="book name as `bible` prints it (default: Psalms)")
    p.add_argument("--out", default="out/demo-psalms", help="output directory (keep it out of the package)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1: best on a shared CPU)")
    p.add_argument("--corpus", default=None, help="saved output of `bible gen1:1-rev22:21` (default: run it)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    import logitscope
    from logitscope.io.atomic import atomic_dir
    from logitscope.loading import DEMO_DIR

    tok = AutoTokenizer.from_pretrained(DEMO_DIR)
    model = AutoModelForCausalLM.from_pretrained(DEMO_DIR, dtype=torch.float32)
    train_ch, held_ch = split_chapters(parse_chapters(load_corpus_text(args.corpus)))
    book = [c for c in train_ch if c[0] == args.book]
    if not book:
        sys.exit(f"no chapters of {args.book!r} (names as `bible` prints them, e.g. Psalms, Proverbs, Revelation)")
    book_held = [c for c in held_ch if c[0] == args.book]
    stream = encode(tok, book)
    held_book = encode(tok, book_held) if book_held else None
    held_all = encode(tok, held_ch)
    print(f"{args.book}: {len(book)} training chapters, {len(stream):,} tokens; held out: {len(book_held)} chapters")

    def losses() -> dict[str, float]:
        model.eval()
        out = {"heldout_all": mean_loss(model, held_all, args.seq_len)}
        if held_book is not None:
            out[f"heldout_{args.book}"] = mean_loss(model, held_book, args.seq_len)
        model.train()
        return out

    before = losses()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)
    curve, t0 = [], time.perf_counter()
    model.train()
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(stream) - args.seq_len - 1, (args.batch_size,), generator=gen)
        batch = torch.stack([stream[s : s + args.seq_len + 1] for s in starts.tolist()])  # (B, T+1)
        loss = torch.nn.functional.cross_entropy(
            model(input_ids=batch[:, :-1]).logits.flatten(0, 1), batch[:, 1:].flatten()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(round(float(loss.detach()), 4))
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {float(loss):.3f}  lr {lr:.2e}  {time.perf_counter() - t0:.0f}s", flush=True)
    model.eval()
    after = losses()
    log = {
        "base": "logitscope demo model",
        "book": args.book,
        "settings": vars(args),
        "train_tokens": len(stream),
        "seconds": round(time.perf_counter() - t0, 1),
        "loss_curve": curve,
        "before": before,
        "after": after,
    }
    with atomic_dir(args.out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "finetune_log.json").write_text(json.dumps(log, indent=2) + "\n")
    for key in before:
        print(f"{key}: {before[key]:.3f} -> {after[key]:.3f} nats/token")
    print(f"wrote {args.out} ({log['seconds']}s); load it with logitscope.load({args.out!r})")
    logitscope.load(args.out)  # self-check: the copy loads and its lens reproduces its logits


if __name__ == "__main__":
    main()
