"""Corpus sources: files, folders and Hugging Face datasets → ``(text, ends_document)`` pieces.

What ``data=`` / ``--data`` may name (see docs/eval.md):

* ``.txt``/``.text``/``.md`` (or any other file named directly): one document, read in pieces
  cut at line ends (memory stays flat);
* ``.jsonl``/``.ndjson``: one document per line, in the ``text_field`` key;
* ``.json`` (an array of objects, or JSON Lines), ``.parquet``, ``.arrow``, ``.csv``: read by 🤗
  ``datasets`` in streaming mode, one document per row, from the ``text_field`` column;
* a folder written by ``Dataset.save_to_disk`` (its ``train`` split, or its only split);
* any other folder: every file above inside it, recursively, in sorted order;
* ``hf:NAME[:CONFIG[:SPLIT]]``: a dataset on the Hugging Face hub, streamed (split ``train``
  unless given), e.g. ``hf:wikitext:wikitext-2-raw-v1:test``. Offline this fails at once.

Text must be UTF-8 (a leading byte-order mark is dropped, :mod:`logitscope.io.textfile`): a bad byte is an :class:`InputError` naming the file and line, unless
``encoding_errors="replace"`` asks for U+FFFD instead. Every other problem (a missing column,
an unreadable file) is an :class:`InputError` too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import EmptyInputError, InputError
from ..io.textfile import decode_utf8, skip_bom

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
DATASETS_SUFFIXES = {".json": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}
SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + tuple(DATASETS_SUFFIXES)
HUB_PREFIX = "hf:"
PIECE_BYTES = 1 << 18  # a plain-text file is tokenised in pieces of about this size
ENCODING_ERRORS = ("strict", "replace")


def looks_like_path(text: str) -> bool:
    """The rule for a ``str`` given as ``data``: a path when it names a corpus file or folder.

    A string is read as a path when it exists, starts with ``hf:``, or has no whitespace and
    either ends with a corpus suffix (``.txt``, ``.jsonl``, ``.json``, ``.parquet``, ...) or holds
    a path separator. Any other string is the text of one document.
    """
    if text.startswith(HUB_PREFIX) or (len(text) < 4096 and "\n" not in text and os.path.exists(text)):
        return True
    if not text or any(c.isspace() for c in text) or len(text) >= 4096:
        return False
    return text.lower().endswith(SUFFIXES) or "/" in text or os.sep in text


class Corpus:
    """The documents of a file, a folder or a hub dataset.

    Iterating yields ``(text, ends_document)`` pieces and advances :attr:`bytes_read`, so a
    progress bar can show :meth:`fraction` (by file size; rows for tabular files; unknown for
    hub datasets).

    Args:
        path: a file, a folder, or ``hf:NAME[:CONFIG[:SPLIT]]`` (see the module docstring).
        text_field: the key or column holding a document's text.
        encoding_errors: ``"strict"`` (a bad UTF-8 byte is an error) or ``"replace"``.
    """

    def __init__(self, path: str | os.PathLike, *, text_field: str = "text", encoding_errors: str = "strict"):
        if encoding_errors not in ENCODING_ERRORS:
            raise InputError(f"encoding_errors must be 'strict' or 'replace', not {encoding_errors!r}")
        if not isinstance(text_field, str) or not text_field:
            raise InputError(f"text_field must be a non-empty string, not {text_field!r}")
        self.text_field, self.encoding_errors = text_field, encoding_errors
        text = os.fspath(path)
        self.hub = parse_hub(text) if text.startswith(HUB_PREFIX) else None
        self.path = Path(text).expanduser()
        if self.hub is not None:
            check_hub(self.hub)
            self.files: list[Path] = []
        elif is_saved_dataset(self.path):
            self.files = [self.path]
        else:
            self.files = list_files(self.path)
        self.total_bytes = sum(_size(f) for f in self.files)
        self.bytes_read = 0

    def __iter__(self) -> Iterator[tuple[str, bool]]:
        self.bytes_read = 0
        if self.hub is not None:
            for text in read_hub(self.hub, self.text_field):
                yield text, True
            return
        done = 0
        for file in self.files:
            size = _size(file)
            for text, end, frac in read_file(file, self.text_field, self.encoding_errors):
                self.bytes_read = done + int(size * frac)
                yield text, end
            done += size
            self.bytes_read = done

    def fraction(self) -> float:
        """Share of the corpus read so far (0 for a hub dataset, whose size is unknown)."""
        if self.hub is not None:
            return 0.0
        return self.bytes_read / self.total_bytes if self.total_bytes else 1.0

    def __repr__(self) -> str:
        if self.hub is not None:
            return f"Corpus(hf:{':'.join(x for x in self.hub if x)})"
        return f"Corpus({str(self.path)!r}, files={len(self.files)}, bytes={self.total_bytes})"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*.arrow"))
    return path.stat().st_size


def list_files(path: Path) -> list[Path]:
    """The corpus files under ``path`` (itself if a file), sorted for a reproducible order."""
    if not path.exists():
        raise InputError(f"no corpus at {str(path)!r}: the path does not exist")
    if path.is_file():  # a file named directly is read as plain text unless its suffix says otherwise
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES))
    if not files:
        raise EmptyInputError(f"no {'/'.join(SUFFIXES)} files under {path}")
    return files


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists())


def read_file(file: Path, text_field: str, errors: str = "strict") -> Iterator[tuple[str, bool, float]]:
    """Yield ``(text, ends_document, fraction_of_file_read)`` from one file or saved dataset."""
    if file.is_dir():
        yield from _rows(_saved_rows(file), file, text_field)
    elif file.name.lower().endswith(JSONL_SUFFIXES):
        yield from _jsonl(file, text_field, errors)
    elif file.suffix.lower() in DATASETS_SUFFIXES:
        yield from _rows(_dataset_rows(file), file, text_field)
    else:
        yield from _text(file, errors)


def _decode(raw: bytes, file: Path, first_line: int, offset: int, errors: str) -> str:
    """UTF-8 text of ``raw`` (lines from ``first_line``, bytes from ``offset`` of ``file``)."""
    advice = "convert the file to UTF-8, or pass encoding_errors='replace' to replace bad bytes"
    return decode_utf8(raw, file, first_line=first_line, offset=offset, errors=errors, advice=advice)


def _text(file: Path, errors: str) -> Iterator[tuple[str, bool, float]]:
    """One document in pieces of about :data:`PIECE_BYTES`, cut at line ends (UTF-8 never splits there);
    a leading byte-order mark is not part of it."""
    size = max(file.stat().st_size, 1)
    with open(file, "rb") as fh:
        buf, n, line = [], 0, 1
        offset = skip_bom(fh)
        for raw in fh:
            buf.append(raw)
            n += len(raw)
            if n >= PIECE_BYTES:
                piece = b"".join(buf)
                yield _decode(piece, file, line, offset, errors), False, (offset + n) / size
                line, offset, buf, n = line + len(buf), offset + n, [], 0
        yield _decode(b"".join(buf), file, line, offset, errors), True, 1.0


def _jsonl(file: Path, text_field: str, errors: str) -> Iterator[tuple[str, bool, float]]:
    size = max(file.stat().st_size, 1)
    with open(file, "rb") as fh:
        offset = skip_bom(fh)  # a byte-order mark before the first object is not part of it
        for lineno, raw in enumerate(fh, 1):
            line = _decode(raw, file, lineno, offset, errors)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                text = json.loads(line)[text_field]
            except (json.JSONDecodeError, TypeError, KeyError, IndexError):
                raise InputError(f"{file}:{lineno}: expected a JSON object with a {text_field!r} field") from None
            if not isinstance(text, str):
                raise InputError(f"{file}:{lineno}: the {text_field!r} field is not a string")
            yield text, True, offset / size


def _rows(rows, file: Path, text_field: str) -> Iterator[tuple[str, bool, float]]:
    """Documents from a ``(row dict, fraction)`` iterator; any reader failure becomes an InputError."""
    n = 0
    try:
        for n, (row, frac) in enumerate(rows, 1):
            if text_field not in row:
                raise InputError(f"{file}: no {text_field!r} column (columns: {', '.join(map(str, row))})")
            text = row[text_field]
            if not isinstance(text, str):
                raise InputError(f"{file}: row {n}: the {text_field!r} column holds {type(text).__name__}, not text")
            yield text, True, frac
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - datasets/pyarrow raise many types for unreadable files
        msg = str(err).splitlines()[0] if str(err) else ""
        raise InputError(f"{file}: cannot read it as a dataset (after {n} rows): {type(err).__name__}: {msg}") from None


@contextmanager
def _quiet_datasets():
    """🤗 datasets without progress bars or log lines (its failures become our one InputError);
    the caller's settings are restored afterwards."""
    import datasets

    verbosity, bars = datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL + 1)
    try:
        yield datasets
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def _dataset_rows(file: Path):
    """``(row, fraction)`` of a JSON/Parquet/Arrow/CSV file, streamed by 🤗 datasets."""
    builder = DATASETS_SUFFIXES[file.suffix.lower()]
    total = None
    if builder == "parquet":
        try:
            import pyarrow.parquet as pq

            total = pq.ParquetFile(file).metadata.num_rows
        except Exception:  # noqa: BLE001 - unreadable: the streaming reader reports it below
            total = None
    with _quiet_datasets() as datasets:
        stream = datasets.load_dataset(builder, data_files=str(file), split="train", streaming=True)
        for i, row in enumerate(stream, 1):
            yield row, (i / total if total else 0.0)


def _saved_rows(folder: Path):
    """``(row, fraction)`` of a ``save_to_disk`` folder (memory-mapped, iterated lazily)."""
    with _quiet_datasets() as datasets:
        ds = datasets.load_from_disk(str(folder))
        if isinstance(ds, datasets.DatasetDict):
            splits = list(ds)
            if "train" not in splits and len(splits) != 1:
                raise InputError(f"{folder}: a DatasetDict with splits {splits}; save one split, or name it 'train'")
            ds = ds["train" if "train" in splits else splits[0]]
        total = max(ds.num_rows, 1)
        for i, row in enumerate(ds.to_iterable_dataset(), 1):
            yield row, i / total


# -- the hub -------------------------------------------------------------------------------------
def parse_hub(spec: str) -> tuple[str, str | None, str]:
    """``hf:NAME[:CONFIG[:SPLIT]]`` → ``(name, config, split)``; split defaults to ``train``."""
    parts = spec[len(HUB_PREFIX) :].split(":")
    if not parts[0] or len(parts) > 3 or any(not p for p in parts[1:]):
        raise InputError(f"{spec!r}: write a hub dataset as hf:NAME, hf:NAME:CONFIG or hf:NAME:CONFIG:SPLIT")
    name, config, split = parts[0], parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else "train"
    return name, config, split


def check_hub(hub: tuple[str, str | None, str]) -> None:
    """Fail at once (``InputError``) when the hub cannot be reached: streaming needs it."""
    from huggingface_hub import constants

    from .hub import hub_reachable

    if os.environ.get("HF_DATASETS_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE") or not hub_reachable():
        raise InputError(
            f"cannot stream dataset {hub[0]!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached "
            "(offline?); download it and give a local file or save_to_disk folder instead"
        )


def read_hub(hub: tuple[str, str | None, str], text_field: str) -> Iterator[str]:
    """The ``text_field`` of every row of a hub dataset split, streamed."""
    name, config, split = hub
    with _quiet_datasets() as datasets:
        try:
            stream = datasets.load_dataset(name, config, split=split, streaming=True)
        except Exception as err:  # noqa: BLE001 - unknown name/config/split, network errors
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"cannot stream hf:{name}: {type(err).__name__}: {msg}") from None
        for text, _, _ in _rows(((row, 0.0) for row in stream), Path(f"hf:{name}"), text_field):
            yield text
