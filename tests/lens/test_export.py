"""Exports: the JSON schema, JSON/JSON Lines round trips, CSV/Parquet round trips to the same numbers."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import AWKWARD, fake_result

import logitscope
from logitscope import export
from logitscope.errors import InputError
from logitscope.lens.result import _ARRAYS

_TYPES = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    "null": lambda x: x is None,
    "boolean": lambda x: isinstance(x, bool),
}


def schema_errors(doc, schema: dict, where: str = "$") -> list[str]:
    """The JSON-Schema subset JSON_SCHEMA uses (type, const, enum, properties, required, items,
    additionalProperties, propertyNames.pattern); the ``jsonschema`` package is not installed here."""
    errors = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](doc) for k in kinds):
            return [f"{where}: {type(doc).__name__} is not {kinds}"]
    if "const" in schema and doc != schema["const"]:
        errors.append(f"{where}: {doc!r} != {schema['const']!r}")
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{where}: {doc!r} not in {schema['enum']}")
    if isinstance(doc, dict):
        errors += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in doc]
        props = schema.get("properties", {})
        for key, value in doc.items():
            if key in props:
                errors += schema_errors(value, props[key], f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(value, schema["additionalProperties"], f"{where}.{key}")
            pattern = schema.get("propertyNames", {}).get("pattern")
            if pattern and not re.search(pattern, key):
                errors.append(f"{where}: key {key!r} does not match {pattern}")
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


def validate(doc) -> None:
    errors = schema_errors(doc, export.JSON_SCHEMA)
    assert not errors, errors[:5]
    try:  # the real validator too, where it is installed
        import jsonschema
    except ImportError:
        return
    jsonschema.Draft202012Validator(export.JSON_SCHEMA).validate(doc)


def assert_same(a, b) -> None:
    for name in _ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and np.array_equal(x, y, equal_nan=True), name  # exact: 9 significant digits
    assert a.tokens == b.tokens and a.layer_names == b.layer_names and a.vocab == b.vocab and a.meta == b.meta


def test_json_validates_and_round_trips(tmp_path):
    res = fake_result()
    doc = json.loads(export.to_json(res))
    validate(doc)
    assert doc["target_prob"][0][-1] is None and doc["target_rank"][0][-1] == -1  # NaN → null
    assert doc["tokens"] == AWKWARD[: res.n_positions]
    assert_same(logitscope.LensResult.from_dict(doc), res)
    res.save(tmp_path / "r.json")
    assert_same(export.load(tmp_path / "r.json"), res)


def test_schema_catches_broken_documents():
    doc = fake_result().to_dict()
    for key, bad in [("entropy", [["x"]]), ("top_ids", [[[1.5]]]), ("schema_version", 99), ("vocab", {"a": "b"})]:
        broken = dict(doc, **{key: bad})
        assert schema_errors(broken, export.JSON_SCHEMA), key
    del doc["tokens"]
    assert schema_errors(doc, export.JSON_SCHEMA) == ["$: missing 'tokens'"]


def test_schema_lists_every_field_of_to_dict():
    assert set(fake_result().to_dict()) <= set(export.JSON_SCHEMA["properties"])
    assert set(export.JSON_SCHEMA["required"]) == set(fake_result().to_dict())


def test_jsonl_and_json_array_of_many(tmp_path):
    results = [fake_result(seed=i, P=3 + i) for i in range(3)]
    export.save(results, tmp_path / "r.jsonl")
    lines = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and [json.loads(line)["input"] for line in lines] == [0, 1, 2]
    for line in lines:
        validate(json.loads(line))
    for a, b in zip(export.load(tmp_path / "r.jsonl"), results):
        assert_same(a, b)
    export.save(results, tmp_path / "r.json")
    assert [r.n_positions for r in export.load(tmp_path / "r.json")] == [3, 4, 5]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tables_round_trip_to_the_same_numbers(tmp_path, fmt):
    res = fake_result(S=4, P=len(AWKWARD))  # every awkward token: "", "NaN", "a,b", "\n", '"q"'...
    path = export.save(res, tmp_path / f"r.{fmt}")
    back, ref = export.read_frame(path), res.to_pandas()
    assert list(back.columns) == list(ref.columns) and len(back) == 4 * len(AWKWARD)
    for col in ref.columns:
        if ref[col].dtype.kind in "fiu":
            assert back[col].dtype == ref[col].dtype, col
            assert np.array_equal(back[col].to_numpy(), ref[col].to_numpy(), equal_nan=ref[col].dtype.kind == "f"), col
        else:
            assert back[col].fillna("").tolist() == ref[col].fillna("").tolist(), col
    assert back["token"].tolist()[: len(AWKWARD)] == AWKWARD
    # the numbers are the result's own
    assert np.array_equal(back["entropy"].to_numpy().reshape(4, -1), res.entropy)
    assert np.array_equal(back["top1_id"].to_numpy().reshape(4, -1), res.top_ids[:, :, 0])
    assert np.isnan(back["target_prob"].to_numpy().reshape(4, -1)[:, -1]).all()


def test_many_results_stack_with_an_input_column(tmp_path):
    results = [fake_result(seed=i, P=3 + i) for i in range(3)]
    df = export.frame(results)
    assert df.columns[0] == "input" and df.groupby("input").size().tolist() == [5 * 3, 5 * 4, 5 * 5]
    export.save(results, tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(export.read_frame(tmp_path / "r.parquet"), df)


def test_format_from_suffix():
    assert export.format_for("a.JSONL") == "jsonl" and export.format_for("x.pq") == "parquet"
    assert export.format_for("x.txt", "csv") == "csv"
    with pytest.raises(InputError, match="cannot tell the format"):
        export.format_for("x.txt")
    with pytest.raises(InputError, match="unknown format"):
        export.format_for("x.csv", "xlsx")


def test_a_real_result_validates(tiny_lm_dir):
    scope = logitscope.load(tiny_lm_dir, device="cpu")
    res = scope.lens("The quick brown fox", track=[" the"], top_k=3)
    doc = json.loads(export.to_json(res))
    validate(doc)
    assert doc["tokens"] == res.tokens and len(doc["layer_names"]) == scope.n_layers + 1
    assert_same(logitscope.LensResult.from_dict(doc), res)
