"""Sharded evaluation equals the single-process run: in-process shards, and real torchrun with gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tiny

from logitscope import Scope
from logitscope.data.distributed import DistContext
from logitscope.evaluate import METRICS, EvalResult

DOCS = [tiny.TEXT, "Héllo wörld, naïve café. " * 4, "In the beginning was the Word. " * 3, "The cat sat."]
SEQ = 16


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    model, tok = tiny.saved_gpt2(path)
    data = tmp_path_factory.mktemp("data") / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS * 2))
    return Scope(model, tok), path, data


class Shard(DistContext):
    """One rank of a fake job: collectives are identities, so the result covers this rank's windows only."""

    def all_reduce_sum(self, array):
        return array

    def all_gather(self, obj):
        return [obj]


def test_round_robin_shards_partition_the_windows(saved):
    scope, _, data = saved
    single = scope.evaluate(data, seq_len=SEQ, batch_size=4, max_tokens=201)
    shards = [scope.evaluate(data, seq_len=SEQ, batch_size=2, max_tokens=201, dist=Shard(r, 3)) for r in range(3)]
    for r, res in enumerate(shards):
        assert (res.window_ids % 3 == r).all()
    ids = np.concatenate([s.window_ids for s in shards])
    sums = np.concatenate([s.window_sums for s in shards])[np.argsort(ids)]
    assert sorted(ids.tolist()) == single.window_ids.tolist()
    np.testing.assert_allclose(sums, single.window_sums, rtol=1e-6, atol=1e-5)
    tokens = np.concatenate([s.window_tokens for s in shards])[np.argsort(ids)]
    nbytes = np.concatenate([s.window_bytes for s in shards])[np.argsort(ids)]
    merged = EvalResult.from_windows(single.layers, np.sort(ids), tokens, nbytes, sums)
    for m in METRICS:
        np.testing.assert_allclose(getattr(merged, m), getattr(single, m), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(merged.ci[m], single.ci[m], rtol=1e-5, atol=1e-5)


def test_torchrun_two_processes_gloo_equal_single_process(saved, tmp_path):
    scope, model_dir, data = saved
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "logitscope", "eval", str(model_dir), "--data", str(data), "--out", str(out)]
    cmd += ["--seq-len", str(SEQ), "--batch-size", "2", "--max-tokens", "250", "--backend", "gloo", "--no-plots"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads((out / "metrics.json").read_text())
    ref = scope.evaluate(data, seq_len=SEQ, batch_size=3, max_tokens=250)
    assert got["world_size"] == 2 and got["n_tokens"] == 250 == ref.n_tokens
    assert got["n_windows"] == ref.n_windows and got["n_bytes"] == ref.n_bytes
    for i, layer in enumerate(got["layers"]):
        for m in METRICS:
            assert layer[m] == pytest.approx(getattr(ref, m)[i], abs=1e-5, rel=1e-5), (i, m)
            np.testing.assert_allclose(layer[f"{m}_ci"], ref.ci[m][i], atol=1e-5, rtol=1e-5)
    import pandas as pd

    frame = pd.read_parquet(out / "per_window.parquet")
    np.testing.assert_array_equal(frame.window.unique(), np.arange(ref.n_windows))
    np.testing.assert_allclose(frame.ce_sum.to_numpy(), ref.window_sums[:, :, 0].ravel(), rtol=1e-6, atol=1e-5)
