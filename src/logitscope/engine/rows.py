"""Row names: which captured places of the residual stream a lens reads, and how they are written.

A *row* is one place in the residual stream, captured during one forward pass:

* a **stream row** ``l`` (an ``int``, ``0 .. L`` for a model of ``L`` blocks): row 0 is the input of
  the first block (the embeddings, after any scaling or norm the model applies), row ``l`` the
  output of block ``l`` (1-based), row ``L`` the final stream the model's own logits come from;
* a **sub-layer row** ``"l.attn"`` (a ``str``, ``1 <= l <= L``): the stream after block ``l``'s
  attention, before its MLP; parallel blocks (attention and MLP side by side) have
  ``"l.in+attn"`` = stream in + attention output instead (:mod:`logitscope.engine.sublayers`).

Rows are ordered by depth: ``0, "1.attn", 1, "2.attn", 2, ...``. Their display names
(:func:`row_name`) are ``"embed"``, ``"1.attn"``, ``"1"``, ... — the ``layer_names`` of every result.
``layers=`` arguments (:func:`parse_rows`) take ints (negative count from the end), ``"embed"``,
digit strings and sub-layer names (``"3.attn"``, ``"-1.attn"``).
"""

from __future__ import annotations

from ..errors import InputError

Row = int | str  # a stream row 0..L, or a sub-layer row name such as "3.attn"

SUBLAYER_SUFFIXES = ("attn", "in+attn")


def row_name(row: Row) -> str:
    """The display name of a row: ``0`` → ``"embed"``, ``3`` → ``"3"``, ``"3.attn"`` → ``"3.attn"``."""
    if isinstance(row, str):
        return row
    return "embed" if row == 0 else str(row)


def is_sublayer(row: Row) -> bool:
    """Whether ``row`` is a sub-layer row (``"3.attn"``), not a stream row."""
    return isinstance(row, str)


def block_of(row: Row) -> int:
    """The stream row a row belongs to: ``"3.attn"`` → 3 (inside block 3), ``5`` → 5."""
    return int(row.split(".", 1)[0]) if isinstance(row, str) else int(row)


def depth_key(row: Row) -> tuple[int, int]:
    """Sort key for depth order: a sub-layer row ``"l.attn"`` comes just before stream row ``l``."""
    return (block_of(row), 0 if isinstance(row, str) else 1)


def names_sublayers(layers) -> bool:
    """Whether a ``layers=`` argument names a sub-layer row (a string with a dot, ``"3.attn"``)."""
    if layers is None:
        return False
    items = _items(layers)
    return any(isinstance(item, str) and "." in item for item in items)


def _items(layers) -> list:
    """The items of a ``layers=`` argument: one layer, or a list/tuple/range/array of them."""
    import numpy as np

    if isinstance(layers, (int, str, np.integer)):
        return [layers]
    if not isinstance(layers, (list, tuple, range, np.ndarray)):
        raise InputError(f"layers= takes a layer (an int or a name) or a list of them, not {type(layers).__name__}")
    return list(layers)


def looks_like_row(item: str) -> bool:
    """Whether text can name a row at all: an int (``"-1"``), a name (``"embed"``) or ``"3.attn"``.

    A syntax check only (``"--1"``, ``"4x"`` and ``""`` fail it); :func:`parse_rows` says whether
    the model has that row.
    """
    item = item.strip()
    head, dot, _ = item.partition(".")
    return bool(item) and (is_int_text(item) or item[0].isalpha() or bool(dot and is_int_text(head)))


def is_int_text(text: str) -> bool:
    """``"3"``, ``"-1"``, ``"+2"``: an optional sign and digits (not ``"--1"`` or ``"4x"``)."""
    return text[1:].isdigit() if text[:1] in ("-", "+") else text.isdigit()


def _stream_row(given, n_blocks: int) -> int:
    numpy_int = getattr(given, "ndim", None) == 0 and getattr(given.dtype, "kind", "") in "iu"
    item = int(given) if numpy_int else given
    if isinstance(item, str):
        name = item.strip()
        item = 0 if name == "embed" else int(name) if is_int_text(name) else None
    if isinstance(item, bool) or not isinstance(item, int):
        raise InputError(f"unknown layer {given!r} in layers=; use 'embed', block numbers or ints (0..{n_blocks})")
    row = item + n_blocks + 1 if item < 0 else item
    if not 0 <= row <= n_blocks:
        raise InputError(f"layer {item} out of range: the model has streams 0..{n_blocks}")
    return row


def _sublayer_block(item: str, n_blocks: int) -> int:
    head, _, suffix = item.strip().partition(".")
    if suffix not in SUBLAYER_SUFFIXES or not is_int_text(head):
        raise InputError(f"unknown layer {item!r} in layers=; sub-layer rows are named like '3.attn'")
    block = int(head) + n_blocks + 1 if int(head) < 0 else int(head)
    if not 1 <= block <= n_blocks:
        raise InputError(f"sub-layer row {item!r} out of range: the model has blocks 1..{n_blocks}")
    return block


def parse_rows(layers, n_blocks: int, *, suffix: str | None = None, every_sublayer: bool = False) -> list[Row]:
    """The rows a ``layers=`` argument selects, in depth order, without repeats.

    Args:
        layers: ``None`` (every stream row ``0..L``), one item or a list of items: ints (negative
            count from the end), ``"embed"``, digit strings, or sub-layer names ``"3.attn"`` /
            ``"3.in+attn"`` / ``"-1.attn"``.
        n_blocks: ``L``, the model's number of blocks.
        suffix: the model's sub-layer suffix (``"attn"`` or ``"in+attn"``,
            :attr:`~logitscope.engine.sublayers.SublayerTap.suffix`); sub-layer rows come out as
            ``f"{l}.{suffix}"`` whichever suffix was written. ``None``: sub-layer names are refused.
        every_sublayer: also add ``"l.<suffix>"`` before every selected stream row ``l >= 1``
            (``sublayers=True``), unless ``layers`` names sub-layer rows itself (then only the rows
            named are kept).

    Raises:
        InputError: an unknown name, a row out of range, or nothing selected.
    """
    if layers is None:
        streams, blocks = list(range(n_blocks + 1)), set()
    else:
        items = _items(layers)
        streams, blocks = [], set()
        for item in items:
            if isinstance(item, str) and "." in item:
                if suffix is None:
                    raise InputError(f"layer {item!r}: sub-layer rows are not available here (stream rows only)")
                blocks.add(_sublayer_block(item, n_blocks))
            else:
                streams.append(_stream_row(item, n_blocks))
    rows: set[Row] = set(streams)
    if blocks:
        rows |= {f"{b}.{suffix}" for b in blocks}
    elif every_sublayer and suffix is not None:
        rows |= {f"{r}.{suffix}" for r in streams if r >= 1}
    if not rows:
        raise InputError("layers= selects no streams")
    return sorted(rows, key=depth_key)


def stream_row(layer, n_blocks: int) -> int:
    """One stream row from a row number or name (``"embed"``, ``"3"``, ``-1``)."""
    return _stream_row(layer, n_blocks)
