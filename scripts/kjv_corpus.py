"""The King James Bible corpus and the demo tokenizer (used by scripts/train_demo.py).

Corpus: Debian package ``bible-kjv``; ``bible gen1:1-rev22:21`` prints the whole Bible. Held-out
split: every 50th chapter (0-based index i with i % 50 == 49).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

EOT = "<|endoftext|>"
PAD = "<|pad|>"
HELDOUT_EVERY = 50
HELDOUT_OFFSET = HELDOUT_EVERY - 1


# --------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------

HEADER_RE = re.compile(r"^(\S.*?) (\d+)$")
VERSE_RE = re.compile(r"^\s+(\d+) (.*)$")


def load_corpus_text(path: str | None) -> str:
    if path:
        return Path(path).read_text(encoding="utf-8")
    try:
        out = subprocess.run(["bible", "gen1:1-rev22:21"], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("`bible` not found: run `apt-get install -y bible-kjv` or pass --corpus FILE")
    return out.stdout


def parse_chapters(raw: str):
    """Parse `bible` output into [(book, chapter, [verse_text, ...]), ...].

    Format: a blank line, a header line "Book N", a blank line, then verses
    "  <num> text" whose long lines wrap onto continuation lines at column 0.
    Verse numbers are stripped; wrapped lines are re-joined with a space.
    """
    chapters = []
    prev_blank = True
    for line in raw.splitlines():
        if not line.strip():
            prev_blank = True
            continue
        m = VERSE_RE.match(line)
        h = HEADER_RE.match(line) if prev_blank and not line[0].isspace() else None
        if h:
            chapters.append((h.group(1), int(h.group(2)), []))
        elif m:
            chapters[-1][2].append(m.group(2).strip())
        else:  # continuation of a wrapped verse
            chapters[-1][2][-1] += " " + line.strip()
        prev_blank = False
    for c in chapters:
        for i, v in enumerate(c[2]):
            c[2][i] = re.sub(r"\s+", " ", v).strip()
    return chapters


def chapter_text(verses) -> str:
    # one verse per line, no verse numbers
    return "\n".join(verses) + "\n"


def split_chapters(chapters):
    train, held = [], []
    for i, c in enumerate(chapters):
        (held if i % HELDOUT_EVERY == HELDOUT_OFFSET else train).append(c)
    return train, held


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------


def train_tokenizer(texts, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # keep offsets as-is; no BOS added automatically (GPT-2 style)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def wrap_tokenizer(tok, max_len: int):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=None,
        pad_token=PAD,
        model_max_length=max_len,  # = the model's max_position_embeddings
        clean_up_tokenization_spaces=False,
    )
    return hf


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def encode_chapters(tok, chapters, eot_id):
    """Token stream: <|endoftext|> chapter1 <|endoftext|> chapter2 ..."""
    ids = []
    for c in chapters:
        ids.append(eot_id)
        ids.extend(tok.encode(chapter_text(c[2])).ids)
    return torch.tensor(ids, dtype=torch.long)
