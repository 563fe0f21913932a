"""Reading a user's text file: UTF-8, a leading byte-order mark dropped, a bad byte named by its line.

Editors on Windows start UTF-8 files with a byte-order mark (U+FEFF, bytes ``EF BB BF``). It is
not text: left in, it would be the first three tokens of the first prompt or document. Every
reader of a user's text (``lens --input-file``, the ``.txt``/``.jsonl`` corpora of ``eval``,
``train-lens`` and ``fit-jlens``) goes through this module, so all of them read such a file as
they read the same file without the mark. (JSON, CSV and Parquet files are read by 🤗 datasets,
which drops the mark itself.)
"""

from __future__ import annotations

import os
from typing import BinaryIO

from ..errors import InputError

BOM = b"\xef\xbb\xbf"


def skip_bom(fh: BinaryIO) -> int:
    """Read past a byte-order mark at the start of a binary file object; returns the bytes skipped (0 or 3).

    Works on pipes too (it peeks instead of seeking).
    """
    head = fh.peek(len(BOM))[: len(BOM)] if hasattr(fh, "peek") else b""
    if head == BOM:
        fh.read(len(BOM))
        return len(BOM)
    return 0


def decode_utf8(
    raw: bytes,
    file: str | os.PathLike,
    *,
    first_line: int = 1,
    offset: int = 0,
    errors: str = "strict",
    advice: str = "convert the file to UTF-8",
) -> str:
    """UTF-8 text of ``raw``, the bytes of ``file`` from line ``first_line`` and byte ``offset`` on.

    Raises:
        InputError: a byte that is not UTF-8 (with ``errors="strict"``), naming the file, the line
            and the byte offset, and saying what to do (``advice``).
    """
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as err:
        line = first_line + raw.count(b"\n", 0, err.start)
        raise InputError(
            f"{os.fspath(file)}:{line}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte offset "
            f"{offset + err.start}); {advice}"
        ) from None


def decode_file_bytes(raw: bytes, file: str | os.PathLike, **kwargs) -> str:
    """The text of a whole file's bytes: :func:`decode_utf8` after dropping a leading byte-order mark."""
    skipped = len(BOM) if raw.startswith(BOM) else 0
    return decode_utf8(raw[skipped:], file, offset=skipped, **kwargs)
