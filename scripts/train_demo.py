#!/usr/bin/env python
"""Train the small demo causal LM bundled with logitscope.

The model is a tiny ``LlamaForCausalLM`` (final RMSNorm + untied lm_head)
trained from scratch on the King James Bible (public domain) with its own
byte-level BPE tokenizer.  The output directory loads with
``AutoTokenizer.from_pretrained(dir)`` / ``AutoModelForCausalLM.from_pretrained(dir)``
like any hub model.

Corpus: Debian package ``bible-kjv`` (``apt-get install -y bible-kjv``);
the text is produced by ``bible gen1:1-rev22:21`` (or pass ``--corpus FILE``
with that command's output saved to a file).

Held-out split: every 50th chapter of the 1189 chapters (0-based chapter
index i with i % 50 == 49, i.e. Genesis 50, Leviticus 10, ...); all other
chapters are used for training (tokenizer and model).

Everything is deterministic for a given ``--seed`` and ``--threads`` on the
same machine/torch build.

Example (the command used for the shipped model is recorded in
``training_log.json`` and docs/demo_model_card.md)::

    .venv/bin/python scripts/train_demo.py --steps 2600 --seed 0 --out src/logitscope/demo_model
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from demo_prompts import write_prompts  # noqa: E402
from kjv_corpus import (  # noqa: E402
    EOT,
    HELDOUT_EVERY,
    HELDOUT_OFFSET,
    PAD,
    chapter_text,
    encode_chapters,
    load_corpus_text,
    parse_chapters,
    split_chapters,
    train_tokenizer,
    wrap_tokenizer,
)


class Batcher:
    """Deterministic epoch-wise batching of fixed-length windows.

    Each epoch picks a random offset in [0, seq_len) and cuts the train stream
    into non-overlapping windows of seq_len+1 tokens, then shuffles them; all
    randomness comes from a torch.Generator seeded with --seed.
    """

    def __init__(self, stream, seq_len, batch_size, seed):
        self.stream = stream
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.g = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.order = None
        self.pos = 0
        self._new_epoch()

    def _new_epoch(self):
        L = self.seq_len + 1
        off = int(torch.randint(0, self.seq_len, (1,), generator=self.g))
        n = (len(self.stream) - off) // L
        self.windows = self.stream[off : off + n * L].view(n, L)
        self.order = torch.randperm(n, generator=self.g)
        self.pos = 0
        self.epoch += 1

    def next(self):
        if self.pos + self.batch_size > len(self.order):
            self._new_epoch()
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.windows[idx]


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------


def build_model(args, vocab_size, eot_id, pad_id):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=args.d_model,
        intermediate_size=args.ffn,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=args.max_pos,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        initializer_range=0.02,
        tie_word_embeddings=False,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        pad_token_id=pad_id,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
    )
    model = LlamaForCausalLM(cfg)
    return model


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


@torch.no_grad()
def evaluate(model, stream, seq_len, batch_size=16, max_tokens=None):
    """Held-out loss / top-1 over non-overlapping windows of the stream."""
    model.eval()
    L = seq_len + 1
    n = len(stream) // L
    windows = stream[: n * L].view(n, L)
    if max_tokens:
        windows = windows[: max(1, max_tokens // seq_len)]
    tot_loss, tot_correct, tot = 0.0, 0, 0
    for i in range(0, len(windows), batch_size):
        b = windows[i : i + batch_size]
        x, y = b[:, :-1], b[:, 1:]
        logits = model(input_ids=x).logits.float()
        tot_loss += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        tot_correct += (logits.argmax(-1) == y).sum().item()
        tot += y.numel()
    model.train()
    return tot_loss / tot, tot_correct / tot, tot


def fix_tokenizer_config(out: Path):
    """Name the generic fast tokenizer class (loads with transformers 4.x and 5.x)."""
    p = out / "tokenizer_config.json"
    cfg = json.loads(p.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("backend", None)
    p.write_text(json.dumps(cfg, indent=2) + "\n")


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="src/logitscope/demo_model", help="output model directory")
    p.add_argument("--steps", type=int, default=2600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--corpus", default=None, help="saved output of `bible gen1:1-rev22:21` (default: run it)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--max-pos", type=int, default=512)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-tokens", type=int, default=16384, help="held-out tokens used for periodic evals")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--bench", action="store_true", help="only time --steps training steps; save nothing")
    p.add_argument(
        "--lens-only",
        action="store_true",
        help="load the model in --out, redo the prompt logit-lens check and rewrite prompts.json",
    )
    args = p.parse_args(argv)
    if args.lens_only:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(args.threads)
        out = Path(args.out)
        summary = write_prompts(AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out), out)
        logp = out / "training_log.json"
        if logp.exists():
            log = json.loads(logp.read_text())
            log["prompt_eval"] = summary
            logp.write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    t_start = time.time()

    raw = load_corpus_text(args.corpus)
    chapters = parse_chapters(raw)
    n_verses = sum(len(c[2]) for c in chapters)
    assert len(chapters) == 1189 and n_verses == 31102, (len(chapters), n_verses)
    train_ch, held_ch = split_chapters(chapters)
    train_texts = [chapter_text(c[2]) for c in train_ch]
    held_texts = [chapter_text(c[2]) for c in held_ch]
    print(
        f"corpus: {len(chapters)} chapters, {n_verses} verses, raw {len(raw.encode())} bytes; "
        f"train {len(train_ch)} ch, held-out {len(held_ch)} ch",
        flush=True,
    )

    tok = train_tokenizer(train_texts, args.vocab_size)
    tok_hf = wrap_tokenizer(tok, args.max_pos)
    eot_id, pad_id = tok.token_to_id(EOT), tok.token_to_id(PAD)
    vocab_size = tok.get_vocab_size()
    train_stream = encode_chapters(tok, train_ch, eot_id)
    held_stream = encode_chapters(tok, held_ch, eot_id)
    print(
        f"tokenizer: vocab {vocab_size}; train {len(train_stream)} tokens, held-out {len(held_stream)} tokens "
        f"({time.time() - t_start:.1f}s)",
        flush=True,
    )

    torch.manual_seed(args.seed)
    model = build_model(args, vocab_size, eot_id, pad_id)
    n_params = sum(p.numel() for p in model.parameters())
    n_emb = model.model.embed_tokens.weight.numel() + model.lm_head.weight.numel()
    print(f"model: {n_params / 1e6:.2f}M params ({(n_params - n_emb) / 1e6:.2f}M non-embedding)", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    batcher = Batcher(train_stream, args.seq_len, args.batch_size, args.seed)
    model.train()
    t_train = time.time()
    hist = []
    ema = None
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        b = batcher.next()
        x, y = b[:, :-1], b[:, 1:]
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        lv = loss.item()
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if (step + 1) % args.log_every == 0 or step == 0:
            el = time.time() - t_train
            tps = (step + 1) * x.numel() / el
            eta = (args.steps - step - 1) * el / (step + 1)
            print(
                f"step {step + 1}/{args.steps} loss {lv:.4f} (ema {ema:.4f}) lr {lr_at(step, args):.2e} "
                f"epoch {batcher.epoch} {tps:.0f} tok/s elapsed {el / 60:.1f}m eta {eta / 60:.1f}m",
                flush=True,
            )
        if not args.bench and args.eval_every and (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            hl, ha, _ = evaluate(model, held_stream, args.seq_len, max_tokens=args.eval_tokens)
            hist.append(
                {
                    "step": step + 1,
                    "train_loss_ema": round(ema, 4),
                    "heldout_loss": round(hl, 4),
                    "heldout_top1": round(ha, 4),
                }
            )
            print(f"  eval step {step + 1}: held-out loss {hl:.4f} ppl {math.exp(hl):.2f} top1 {ha:.4f}", flush=True)
    train_wall = time.time() - t_train
    tokens_seen = args.steps * args.batch_size * args.seq_len
    print(f"training done: {train_wall / 60:.1f} min, {tokens_seen / train_wall:.0f} tok/s", flush=True)
    if args.bench:
        return

    # final evaluation: full held-out set, and the train loss over (up to) the
    # same number of train tokens with the final weights
    hl, ha, ht = evaluate(model, held_stream, args.seq_len)
    tl, ta, tt = evaluate(model, train_stream, args.seq_len, max_tokens=len(held_stream))
    print(
        f"final: train loss {tl:.4f} (top1 {ta:.4f}, {tt} tok); held-out loss {hl:.4f} "
        f"ppl {math.exp(hl):.2f} top1 {ha:.4f} ({ht} tok)",
        flush=True,
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.bos_token_id = eot_id
    model.generation_config.eos_token_id = eot_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(out, safe_serialization=True)
    tok_hf.save_pretrained(out)
    fix_tokenizer_config(out)

    # held-out sample for tests: whole verses from the first held-out chapters
    lines, size = [], 0
    for c in held_ch:
        for v in c[2]:
            if size + len(v) + 1 > 4096:
                break
            lines.append(v)
            size += len(v) + 1
        else:
            continue
        break
    (out / "heldout.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    prompt_eval = write_prompts(model, tok_hf, out)

    log = {
        "model": "LlamaForCausalLM (untied lm_head, final RMSNorm)",
        "corpus": "King James Bible (Authorized Version), Debian package bible-kjv, `bible gen1:1-rev22:21`; "
        "verse numbers and chapter headers stripped, one verse per line, chapters separated by <|endoftext|>",
        "license": "public domain (corpus); the model and tokenizer are released under the project's license",
        "corpus_size": {
            "raw_bytes": len(raw.encode("utf-8")),
            "text_bytes": sum(len(t.encode()) for t in train_texts + held_texts),
            "chapters": len(chapters),
            "verses": n_verses,
            "train_tokens": len(train_stream),
            "heldout_tokens": len(held_stream),
        },
        "split": {
            "rule": f"held-out = chapters with 0-based global chapter index i where i % {HELDOUT_EVERY} == {HELDOUT_OFFSET}",
            "heldout_chapters": [f"{c[0]} {c[1]}" for c in held_ch],
            "train_chapters": len(train_ch),
            "heldout_text_bytes": sum(len(t.encode()) for t in held_texts),
        },
        "tokenizer": {
            "type": "byte-level BPE (tokenizers)",
            "vocab_size": vocab_size,
            "special_tokens": {"bos/eos": EOT, "pad": PAD},
            "trained_on": "train split only",
        },
        "hyperparameters": {k: v for k, v in vars(args).items() if k not in ("out", "bench", "corpus", "lens_only")},
        "parameters": n_params,
        "non_embedding_parameters": n_params - n_emb,
        "steps": args.steps,
        "tokens_seen": tokens_seen,
        "epochs": round(tokens_seen / len(train_stream), 3),
        "optimizer": "AdamW(betas=(0.9, 0.95), eps=1e-8), linear warmup + cosine decay to min_lr, grad clip",
        "wall_time_s": {"training": round(train_wall, 1), "total": round(time.time() - t_start, 1)},
        "machine": "2-core CPU, torch 2.13 CPU" + f" ({platform.machine()}, {args.threads} thread(s))",
        "versions": {
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "tokenizers": __import__("tokenizers").__version__,
            "python": platform.python_version(),
        },
        "final": {
            "train_loss": round(tl, 4),
            "train_loss_ema_last_steps": round(ema, 4),
            "train_top1": round(ta, 4),
            "heldout_loss": round(hl, 4),
            "heldout_perplexity": round(math.exp(hl), 3),
            "heldout_top1": round(ha, 4),
            "heldout_eval_tokens": ht,
        },
        "eval_history": hist,
        "prompt_eval": prompt_eval,
        "command": "python scripts/train_demo.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (out / "training_log.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    print(f"saved to {out} ({time.time() - t_start:.0f}s total)", flush=True)


if __name__ == "__main__":
    main()
