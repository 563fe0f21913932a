"""With the hub unreachable (offline, a closed port, or one that never answers), hub model ids and
hub datasets fail in seconds with one clear error; cached models still load."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import logitscope
from logitscope.errors import InputError


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


@pytest.fixture
def silent_server():
    """A local port that accepts connections and never answers (a hung network), and a closed one."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1], closed_port
    server.close()


def test_hub_probe(silent_server, monkeypatch):
    from huggingface_hub import constants

    from logitscope.data.hub import hub_reachable

    silent, closed = silent_server
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for port in (silent, closed):
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        t0 = time.perf_counter()
        assert not hub_reachable(timeout=1.0)
        assert time.perf_counter() - t0 < 3
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not hub_reachable()


def test_offline_hub_id_fails_in_seconds(silent_server, tiny_lm_dir, tmp_path):
    snapshot = tmp_path / "hub" / "models--org--cached" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_lm_dir, snapshot)  # a model in the local cache, as a download leaves it
    (tmp_path / "hub" / "models--org--cached" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--cached" / "refs" / "main").write_text("0" * 40)
    code = (
        "import time, logitscope, huggingface_hub\n"
        "t0 = time.perf_counter()\n"
        "try:\n    logitscope.load('some-org/some-model')\n"
        "except logitscope.ModelNotFoundError as e:\n    print(round(time.perf_counter() - t0, 2), e)\n"
        "print(logitscope.load('org/cached').n_layers)\n"
    )
    endpoint = f"http://127.0.0.1:{silent_server[0]}"  # hangs: the probe's 2 s timeout decides
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    first, cached = out.stdout.splitlines()
    seconds, message = first.split(" ", 1)
    assert float(seconds) < 5, out.stdout  # was ~26 s of "Retrying in 8s"
    assert "hub cannot be reached" in message and "some-org/some-model" in message
    assert cached == "3"  # a cached model still loads without the hub


def test_hub_dataset_offline_fails_fast(demo):
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="cannot be reached"):
        demo.evaluate("hf:wikitext:wikitext-2-raw-v1:test")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(InputError, match="hf:NAME"):
        demo.evaluate("hf:a:b:c:d")
