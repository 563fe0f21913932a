"""What one request may ask of the server; every violation is a 4xx with a JSON message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Request limits of one server.

    Attributes:
        max_body_bytes: largest request body (413 above).
        max_chars: characters per text box (prompt, target, second prompt).
        max_tokens: tokens per input after tokenisation (lens positions; also capped by the context).
        max_top_k: top tokens per cell.
        max_track: pinned (tracked) tokens per request.
        max_ids: token ids a column request may score.
        max_generate: greedy tokens in the logits tab.
        max_nearest: neighbours in the embeddings tab; max_nearest_queries: tokens queried at once.
        max_rows: grid rows before an automatic layer stride (embed and output rows always kept).
        max_queue: requests waiting per model before 503 + Retry-After.
    """

    max_body_bytes: int = 64 * 1024
    max_chars: int = 4000
    max_tokens: int = 256
    max_top_k: int = 50
    max_track: int = 8
    max_ids: int = 64
    max_generate: int = 64
    max_nearest: int = 50
    max_nearest_queries: int = 16
    max_rows: int = 48
    max_queue: int = 8
