"""Atomic outputs: write to a temporary name beside the destination, then move into place.

An interrupted run (Ctrl-C, a full disk, an exception) leaves either the old state or the
complete new output, never a half-written file or a partial set of files.

    with atomic_file("lens.png") as tmp:      # tmp: a Path in the same directory
        fig.savefig(tmp)
    with atomic_dir("runs/gpt2") as tmp:      # tmp: a fresh sibling directory
        (tmp / "metrics.json").write_text(...)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _suffix(path: Path) -> str:
    return "".join(path.suffixes[-2:]) if path.suffix else ""


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success it replaces ``path``.

    The temporary keeps ``path``'s suffix, so writers that choose a format from the file name
    (matplotlib, pandas) behave as they would for ``path``. On any exception (including
    ``KeyboardInterrupt``) the temporary is removed and ``path`` is left as it was.
    """
    dest = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{_suffix(dest)}", dir=dest.parent or ".")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success its files land in ``path``.

    When ``path`` does not exist the whole directory is renamed into place (atomic). When it
    exists (a directory), each file is moved in with ``os.replace`` only after all of them
    were written, so an interruption while writing leaves ``path`` untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        if not dest.exists():
            os.replace(tmp, dest)
            return
        for item in sorted(tmp.rglob("*")):
            rel = item.relative_to(tmp)
            if item.is_dir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
            else:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, dest / rel)
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
