"""Benchmark: ``logitscope serve`` under 200 concurrent mixed requests.

Starts the real server (``logitscope serve demo --port 0``, a subprocess on 127.0.0.1) and fires
``--requests`` requests at once: valid lens / logits / nearest / column requests, over-long ones
(too many characters, too many tokens, top-k too large, a body over the limit) and malformed ones
(broken JSON, wrong types, missing or extra fields, unknown models, empty text, wrong method).
A 503 is the documented "queue full" answer: the client waits ``Retry-After`` and retries, as the
page does. The script then checks, and exits 1 unless all hold:

* no 5xx other than 503, and every refusal is the expected 4xx with a JSON ``error``;
* every 200 equals the Python API's result for the same input (``scope.lens(...).to_dict()``,
  ``scope.logits(...).top(k).to_dict()``, ``scope.nearest(...)``, tracked probabilities/ranks);
* the server's RSS after the storm is within 100 MB of its RSS at start.

It prints p50/p95 latency (per request, retries included) and the status counts::

    .venv/bin/python bench/bench_serve.py          # ~3-4 min on a shared 2-core CPU
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import threading
import time

PROMPTS = [
    "Jesus answered and said unto them, Verily I say unto",
    "Blessed be the LORD God, the God of",
    "And God said, Let there be light: and there was",
    "In the beginning God created the heaven and the",
    "And the LORD spake unto Moses, saying,",
    "The LORD is my shepherd; I shall not",
    "For God so loved the world, that he gave his only begotten",
    "And it came to pass, when",
]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def start_server(max_queue: int):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "logitscope", "serve", "demo", "--port", "0", "--device", "cpu"]
    cmd += ["--max-queue", str(max_queue)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stderr:
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep draining
            return proc, match.group(1)
    raise RuntimeError("the server did not start")


def make_requests(n: int, seed: int = 0) -> list[dict]:
    """``n`` requests: ~70% valid, ~10% over a limit, ~20% malformed, shuffled."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        prompt = rng.choice(PROMPTS)
        if kind < 0.45:
            body = {"model": "demo", "text": prompt, "top_k": rng.choice([1, 5, 10, 20])}
            if rng.random() < 0.4:
                body["target"] = rng.choice([" Israel", " thee", " the"])
            if rng.random() < 0.4:
                body["track"] = rng.sample([" LORD", " God", " the", " unto"], 2)
            out.append({"path": "/api/lens", "json": body, "expect": 200})
        elif kind < 0.55:
            body = {"model": "demo", "text": prompt, "top_k": 5}
            if rng.random() < 0.5:
                body["generate"] = rng.choice([2, 4])
            out.append({"path": "/api/logits", "json": body, "expect": 200})
        elif kind < 0.62:
            q = rng.choice([" LORD", " Moses God", " the"])
            out.append({"path": "/api/nearest", "json": {"model": "demo", "text": q, "k": 8}, "expect": 200})
        elif kind < 0.70:
            body = {"model": "demo", "text": prompt, "position": rng.choice([0, 2, -1]), "ids": [5, 343, 1136]}
            out.append({"path": "/api/column", "json": body, "expect": 200})
        elif kind < 0.80:
            over = rng.choice(
                [
                    ({"model": "demo", "text": "x" * 4500}, 413),  # characters
                    ({"model": "demo", "text": " the" * 300}, 413),  # tokens (1200 chars)
                    ({"model": "demo", "text": prompt, "top_k": 500}, 413),
                    ({"model": "demo", "text": prompt, "track": [" a"] * 20}, 413),
                ]
            )
            out.append({"path": "/api/lens", "json": over[0], "expect": over[1]})
        else:
            bad = rng.choice(
                [
                    {"content": b'{"model": "demo", "text": ', "expect": 422},
                    {"content": b"[]", "expect": 422},
                    {"json": {"model": "demo", "text": 42}, "expect": 422},
                    {"json": {"model": "demo"}, "expect": 422},
                    {"json": {"model": "demo", "text": "a", "path": "/etc/passwd"}, "expect": 422},
                    {"json": {"model": "../demo", "text": "a"}, "expect": 404},
                    {"json": {"model": "demo", "text": ""}, "expect": 400},
                    {"json": {"model": "demo", "text": "a", "top_k": -3}, "expect": 422},
                    {"content": b"{" + b" " * 70_000 + b"}", "expect": 413},
                    {"method": "GET", "expect": 405},
                ]
            )
            out.append({"path": "/api/lens", **bad})
    rng.shuffle(out)
    return out


async def fire(base: str, requests: list[dict]) -> list[dict]:
    import httpx

    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def one(req: dict) -> dict:
            start, n503 = time.perf_counter(), 0
            while True:
                if req.get("method") == "GET":
                    r = await client.get(req["path"])
                elif "content" in req:
                    r = await client.post(
                        req["path"], content=req["content"], headers={"content-type": "application/json"}
                    )
                else:
                    r = await client.post(req["path"], json=req["json"])
                if r.status_code != 503:
                    break
                n503 += 1
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            return {
                **req,
                "status": r.status_code,
                "body": r.content,
                "seconds": time.perf_counter() - start,
                "n503": n503,
            }

        return await asyncio.gather(*(one(r) for r in requests))


def expected(scope, req: dict):
    """The Python API's answer for a valid request, as JSON-ready data."""
    body = req["json"]
    if req["path"] == "/api/lens":
        res = scope.lens(body["text"], target=body.get("target"), track=body.get("track"), top_k=body["top_k"])
        return res.to_dict()
    if req["path"] == "/api/logits":
        out = scope.logits(body["text"], generate=body.get("generate"))
        return out.top(body["top_k"]).to_dict()
    if req["path"] == "/api/nearest":
        ids = scope.tokenizer(body["text"], add_special_tokens=False)["input_ids"]
        return {"queries": [n.to_dict() for n in scope.nearest(ids, k=body["k"])]}
    res = scope.lens(body["text"], track=body["ids"])
    return res


def check(scope, results: list[dict]) -> list[str]:
    import numpy as np

    problems = []
    cache: dict[str, object] = {}
    for r in results:
        if r["status"] >= 500:
            problems.append(f"{r['status']} for {r['path']}: {r['body'][:200]!r}")
            continue
        if r["status"] != r["expect"]:
            problems.append(
                f"expected {r['expect']}, got {r['status']} for {r.get('json', r.get('content', b''))!r:.120}"
            )
            continue
        data = json.loads(r["body"]) if r["body"] else None
        if r["status"] != 200:
            if not (isinstance(data, dict) and data.get("error")):
                problems.append(f"{r['status']} without a JSON error: {r['body'][:120]!r}")
            continue
        key = r["path"] + json.dumps(r["json"], sort_keys=True)
        if key not in cache:
            cache[key] = expected(scope, r)
        want = cache[key]
        if r["path"] == "/api/column":
            pos = data["position"]
            ok = np.allclose(np.array(data["probs"]), want.tracked_probs[:, :, pos], rtol=1e-4, atol=1e-7)
            ok &= np.array_equal(np.array(data["ranks"]), want.tracked_ranks[:, :, pos])
        elif r["path"] == "/api/nearest":
            ok = json.loads(json.dumps(want, default=lambda a: a.tolist()))["queries"] == data["queries"]
        else:
            ok = all(data[k] == v for k, v in json.loads(json.dumps(want, default=lambda a: a.tolist())).items())
        if not ok:
            problems.append(f"200 differs from the Python API for {key[:120]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-queue", type=int, default=8, help="the server's --max-queue")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    import logitscope

    proc, base = start_server(args.max_queue)
    try:
        time.sleep(1.0)
        rss_start = rss_mb(proc.pid)
        requests = make_requests(args.requests, args.seed)
        peak = [rss_start]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(proc.pid))
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        single = [r for r in requests if r["path"] == "/api/lens" and r.get("expect") == 200][:20]
        alone = [asyncio.run(fire(base, [r]))[0]["seconds"] for r in single]  # one at a time: service time
        t0 = time.perf_counter()
        results = asyncio.run(fire(base, requests))
        wall = time.perf_counter() - t0
        done.set()
        time.sleep(2.0)
        rss_end = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    scope = logitscope.load("demo", device="cpu")
    problems = check(scope, results)
    lat = np.array([r["seconds"] for r in results])
    ok = [r["seconds"] for r in results if r["status"] == 200]
    statuses: dict[int, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    n503 = sum(r["n503"] for r in results)
    print(
        f"one lens request at a time (n={len(alone)}): p50 {np.percentile(alone, 50) * 1000:.0f} ms  p95 {np.percentile(alone, 95) * 1000:.0f} ms"
    )
    print(f"{len(results)} concurrent requests in {wall:.1f} s; final statuses {dict(sorted(statuses.items()))}")
    print(f"503 (queue full, retried after Retry-After): {n503} responses")
    print(f"latency all:  p50 {np.percentile(lat, 50):.2f} s  p95 {np.percentile(lat, 95):.2f} s")
    print(f"latency 200s: p50 {np.percentile(ok, 50):.2f} s  p95 {np.percentile(ok, 95):.2f} s  (n={len(ok)})")
    print(
        f"server RSS: start {rss_start:.0f} MB, peak {peak[0]:.0f} MB, end {rss_end:.0f} MB (end - start {rss_end - rss_start:+.0f} MB)"
    )
    if rss_end - rss_start > 100:
        problems.append(f"RSS grew by {rss_end - rss_start:.0f} MB")
    for p in problems[:20]:
        print("PROBLEM:", p)
    print("OK: no 5xx but 503, every 200 equals the Python API, RSS back within 100 MB" if not problems else "FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
