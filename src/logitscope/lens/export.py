"""Save lens results: JSON (one result), JSON Lines (many), CSV and Parquet (long tables); read tables back.

JSON is :meth:`LensResult.to_dict` as is, described by :data:`JSON_SCHEMA` (docs/lens_output.md
explains every field; :func:`logitscope.lens.result.load` reads it back); CSV and Parquet hold :meth:`LensResult.to_pandas`, one row per
(layer, position), with an ``input`` column first when several results share a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.formats import format_of

SCHEMA_VERSION = 1  # of the JSON document (LensResult.to_dict)
FORMATS = ("json", "jsonl", "csv", "parquet")
_SUFFIXES = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Columns of to_pandas() that hold text (everything else is numeric).
TEXT_COLUMNS = ("layer_name", "token")


def _array(items: dict, depth: int) -> dict:
    for _ in range(depth):
        items = {"type": "array", "items": items}
    return items


_INT, _NUM, _STR = {"type": "integer"}, {"type": "number"}, {"type": "string"}
_NUM_OR_NULL = {"type": ["number", "null"]}

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "logitscope LensResult",
    "description": "S = layers shown (streams), P = positions, k = top-k, K = tracked tokens.",
    "type": "object",
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "input": {"type": "integer", "description": "index of the input (JSON Lines from the CLI only)"},
        "meta": {
            "type": "object",
            "properties": {
                "model": _STR,
                "model_type": _STR,
                "kind": {"enum": ["causal", "seq2seq", "masked"]},
                "n_blocks": _INT,
            },
        },
        "tokens": _array(_STR, 1) | {"description": "(P,) decoded input tokens"},
        "token_ids": _array(_INT, 1) | {"description": "(P,)"},
        "layer_names": _array(_STR, 1) | {"description": "(S,) 'embed', '1', ..., 'L'"},
        "layers": _array(_INT, 1) | {"description": "(S,) stream index, 0 = embeddings"},
        "source_tokens": {"type": ["array", "null"], "items": _STR},
        "top_ids": _array(_INT, 3) | {"description": "(S, P, k) most likely first"},
        "top_probs": _array(_NUM, 3) | {"description": "(S, P, k)"},
        "top_tokens": _array(_STR, 3) | {"description": "(S, P, k)"},
        "entropy": _array(_NUM, 2) | {"description": "(S, P) nats"},
        "kl_to_final": _array(_NUM, 2) | {"description": "(S, P) KL(final || layer), nats"},
        "target_ids": _array(_INT, 1) | {"description": "(P,) -1 = no target"},
        "target_tokens": _array({"type": ["string", "null"]}, 1) | {"description": "(P,)"},
        "target_prob": _array(_NUM_OR_NULL, 2) | {"description": "(S, P) null = no target"},
        "target_logprob": _array(_NUM_OR_NULL, 2) | {"description": "(S, P) null = no target"},
        "target_rank": _array(_INT, 2) | {"description": "(S, P) 0 = top-1, -1 = no target"},
        "tracked_ids": _array(_INT, 1) | {"description": "(K,)"},
        "tracked_tokens": _array(_STR, 1) | {"description": "(K,)"},
        "tracked_probs": _array(_NUM, 3) | {"description": "(K, S, P)"},
        "tracked_ranks": _array(_INT, 3) | {"description": "(K, S, P) 0 = top-1"},
        "vocab": {
            "type": "object",
            "propertyNames": {"pattern": "^[0-9]+$"},
            "additionalProperties": _STR,
            "description": "display string of every token id in the arrays",
        },
    },
    "required": [
        "schema_version", "meta", "tokens", "token_ids", "layer_names", "layers", "source_tokens",
        "top_ids", "top_probs", "top_tokens", "entropy", "kl_to_final", "target_ids", "target_tokens",
        "target_prob", "target_logprob", "target_rank", "tracked_ids", "tracked_tokens", "tracked_probs",
        "tracked_ranks", "vocab",
    ],
}  # fmt: skip


def format_for(path: str | os.PathLike | None, format: str | None = None) -> str:
    """The export format: ``format`` if given, else from the file suffix (``.json``, ``.jsonl``,
    ``.csv``, ``.parquet``/``.pq``)."""
    if format is not None:
        if format not in FORMATS:
            raise InputError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
        return format
    return format_of(path, _SUFFIXES, what="lens result", hint=" or pass format=")


def to_json(result, *, indent: int | None = None, **extra) -> str:
    """One result as a JSON document (:data:`JSON_SCHEMA`); ``extra`` keys are added at the top."""
    data = result.to_dict()
    data.update(extra)
    return json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)


def _is_one(results) -> bool:
    """One result (anything with ``to_pandas``), not a list of them."""
    return hasattr(results, "to_pandas")


def frame(results):
    """A pandas DataFrame of one result (:meth:`LensResult.to_pandas`) or of several, stacked with
    an ``input`` column (0-based index of the result) first."""
    import pandas as pd

    if _is_one(results):
        return results.to_pandas()
    parts = []
    for i, res in enumerate(results):
        df = res.to_pandas()
        df.insert(0, "input", i)
        parts.append(df)
    if not parts:
        raise InputError("no results to export")
    return pd.concat(parts, ignore_index=True)


def save(results, path: str | os.PathLike, format: str | None = None) -> Path:
    """Write one result or a list of them.

    Args:
        results: a result, or a list (JSON: a JSON array; JSON Lines: one per line; CSV/Parquet:
            stacked with an ``input`` column).
        path: file to write, atomically (a temporary name, then moved into place).
        format: ``json``, ``jsonl``, ``csv`` or ``parquet``; default from the suffix.

    Returns:
        The path written.
    """
    from ..io.atomic import atomic_file

    fmt, path = format_for(path, format), Path(path)
    many = not _is_one(results)
    with atomic_file(path) as tmp:  # complete or not at all
        if fmt == "json":
            data = [r.to_dict() for r in results] if many else results.to_dict()
            tmp.write_text(json.dumps(data, ensure_ascii=False, allow_nan=False), encoding="utf-8")
        elif fmt == "jsonl":
            items = results if many else [results]
            lines = [to_json(r, input=i) if many else to_json(r) for i, r in enumerate(items)]
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        elif fmt == "csv":
            frame(results).to_csv(tmp, index=False)
        else:
            frame(results).to_parquet(tmp, index=False)
    return path


def read_frame(path: str | os.PathLike, format: str | None = None):
    """Read a CSV or Parquet export into a DataFrame with the dtypes :meth:`LensResult.to_pandas` had.

    CSV: token columns stay text even when a token reads like ``"NaN"`` or ``"null"``; where a
    position has no target (``target_id`` -1) ``target_token`` is missing, as in ``to_pandas()``.
    """
    import pandas as pd

    fmt = format_for(path, format)
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt != "csv":
        raise InputError(f"read_frame reads csv or parquet, not {fmt}")
    columns = pd.read_csv(path, nrows=0).columns
    text = [c for c in columns if c in TEXT_COLUMNS or c.endswith("_token")]
    numeric = [c for c in columns if c not in text]
    df = pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False, na_values={c: [""] for c in numeric})
    if "target_token" in df and "target_id" in df:  # no target: missing, as in to_pandas() (not "")
        df["target_token"] = df["target_token"].where(df["target_id"] >= 0)
    for c in numeric:  # statistics are float32 in a result; CSV keeps their shortest float32 repr
        if df[c].dtype.kind == "f":
            df[c] = df[c].astype("float32")
    return df
