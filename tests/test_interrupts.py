"""Ctrl-C on eval / train-lens says what was kept and how to go on; train-lens
refuses to replace an existing --out without --force; the torchrun progress never over-counts."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import tiny
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.data.distributed import DistContext
from logitscope.data.windows import Corpus

SEQ = 16
TRAIN = ["--steps", "4", "--tokens-per-step", str(4 * SEQ), "--seq-len", str(SEQ), "--batch-size", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "docs.jsonl"
    docs = [tiny.TEXT, "In the beginning was the Word. " * 3, "The cat sat on the mat. " * 5] * 3
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def interrupted(res, code: int = 130) -> str:
    assert res.exit_code == code, (res.output, res.exception)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]  # (progress lines above)
    assert len(errors) == 1 and errors[0].startswith("error: interrupted") and "Traceback" not in res.output
    assert res.stderr.splitlines()[-1] == errors[0], res.stderr
    return errors[0]


def test_eval_ctrl_c_says_nothing_was_written(tiny_lm_dir, corpus, tmp_path, monkeypatch):
    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(logitscope.Scope, "evaluate", stop)
    out = tmp_path / "ev"
    err = interrupted(invoke("eval", tiny_lm_dir, "--data", corpus, "--out", out, "--seq-len", SEQ))
    assert "nothing was written" in err and "run the same command again" in err
    assert not out.exists()


def test_train_lens_ctrl_c_names_the_checkpoint_and_resume(tiny_lm_dir, corpus, tmp_path, monkeypatch):
    import logitscope.tuned.train as train

    real, calls = train.save_checkpoint, []

    def save_then_stop(*a, **k):
        real(*a, **k)
        calls.append(k["step"])
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", save_then_stop)
    out = tmp_path / "lens"
    err = interrupted(invoke("train-lens", tiny_lm_dir, "--data", corpus, "--out", out, *TRAIN, "--save-every", "1"))
    ckpt = tmp_path / "lens.ckpt.pt"
    assert ckpt.is_file() and str(ckpt) in err and "--resume" in err and "after step 2" in err, err
    assert not out.exists()
    monkeypatch.setattr(train, "save_checkpoint", real)
    res = invoke("train-lens", tiny_lm_dir, "--data", corpus, "--out", out, *TRAIN, "--save-every", "1", "--resume")
    assert res.exit_code == 0, res.output
    assert (out / "params.pt").is_file()


def test_train_lens_ctrl_c_before_any_checkpoint(tiny_lm_dir, corpus, tmp_path, monkeypatch):
    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(logitscope.Scope, "train_lens", stop)
    err = interrupted(invoke("train-lens", tiny_lm_dir, "--data", corpus, "--out", tmp_path / "l", *TRAIN))
    assert "before the first checkpoint" in err and "every 50 steps" in err


def test_train_lens_refuses_an_existing_out_without_force(tiny_lm_dir, corpus, tmp_path):
    out = tmp_path / "lens"
    out.mkdir()
    (out / "config.json").write_text("{}")
    res = invoke("train-lens", tiny_lm_dir, "--data", corpus, "--out", out, *TRAIN)
    assert res.exit_code == 2 and "--force" in res.stderr, res.output
    assert (out / "config.json").read_text() == "{}"
    res = invoke("train-lens", tiny_lm_dir, "--data", corpus, "--out", out, *TRAIN, "--force")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text()) != {}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("train-lens", tiny_lm_dir, "--data", corpus, "--out", empty, *TRAIN).exit_code == 0


@dataclass
class RankZeroOfTwo(DistContext):
    """Rank 0 of a 2-process job, without a process group: collectives return this rank's part only."""

    rank: int = 0
    world_size: int = 2

    def all_reduce_sum(self, array):
        return array

    def all_gather(self, obj):
        return [obj]


@pytest.mark.parametrize("max_tokens", [None, 5 * (SEQ - 1) + 3])
def test_torchrun_progress_never_over_counts(tiny_lm_dir, corpus, max_tokens):
    scope = logitscope.load(tiny_lm_dir)
    single, seen = [], []
    full = scope.evaluate(Corpus(corpus), seq_len=SEQ, batch_size=1, max_tokens=max_tokens, ci="stderr",
                          progress=lambda done, total: single.append(done))  # fmt: skip
    scope.evaluate(Corpus(corpus), seq_len=SEQ, batch_size=1, max_tokens=max_tokens, ci="stderr",
                   dist=RankZeroOfTwo(), progress=lambda done, total: seen.append(done))  # fmt: skip
    total = single[-1]
    assert total == full.n_tokens
    assert seen == sorted(seen) and max(seen) <= total, (seen, total)
    assert seen[-1] >= total - SEQ  # within the last window (another rank's) of the whole job's count
    assert sum(1 for d in seen if d > total) == 0
