"""Row names, one home: what ``layers=`` selects, how rows are named and ordered (engine/rows.py)."""

from __future__ import annotations

import pytest

from logitscope.engine.rows import block_of, depth_key, looks_like_row, parse_rows, row_name
from logitscope.errors import InputError


def test_names_and_depth_order():
    assert [row_name(r) for r in (0, 3, "3.attn")] == ["embed", "3", "3.attn"]
    assert block_of("12.in+attn") == 12 and block_of(7) == 7
    assert sorted([2, "2.attn", 0, "1.attn", 1], key=depth_key) == [0, "1.attn", 1, "2.attn", 2]


def test_layers_select_stream_rows():
    assert parse_rows(None, 3) == [0, 1, 2, 3]
    assert parse_rows(["embed", "-1", 2, -1], 4) == [0, 2, 4]
    assert parse_rows(0, 4) == [0] and parse_rows("2", 4) == [2]


def test_sublayer_rows_take_the_model_suffix():
    assert parse_rows(None, 2, suffix="attn", every_sublayer=True) == [0, "1.attn", 1, "2.attn", 2]
    assert parse_rows(["2.attn", 1], 3, suffix="in+attn") == [1, "2.in+attn"]  # either spelling, the model's suffix
    assert parse_rows(["-1.attn"], 3, suffix="attn") == ["3.attn"]
    assert parse_rows([1, "2.attn"], 3, suffix="attn", every_sublayer=True) == [1, "2.attn"]  # named rows only


@pytest.mark.parametrize(
    "layers, suffix, words",
    [
        ([9], None, "out of range: the model has streams 0..3"),
        (["--1"], None, "unknown layer '--1'"),
        ([True], None, "unknown layer True"),
        (["3.mlp"], "attn", "sub-layer rows are named like '3.attn'"),
        (["0.attn"], "attn", "out of range: the model has blocks 1..3"),
        (["2.attn"], None, "stream rows only"),
        ([], None, "selects no streams"),
    ],
)
def test_bad_layers_are_one_clear_error(layers, suffix, words):
    with pytest.raises(InputError, match=words.replace("(", r"\(").replace(".", r"\.")):
        parse_rows(layers, 3, suffix=suffix)


def test_row_syntax_for_the_command_line():
    assert all(looks_like_row(x) for x in ("-1", "+2", "0", "embed", "3.attn", "-1.in+attn"))
    assert not any(looks_like_row(x) for x in ("--1", "4x", "", " "))
