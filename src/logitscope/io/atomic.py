"""Atomic outputs: write to a temporary name beside the destination, then move into place.

An interrupted run (Ctrl-C, a full disk, an exception) leaves either the old state or the
complete new output, never a half-written file or a partial set of files.

    with atomic_file("lens.png") as tmp:      # tmp: a Path in the same directory
        fig.savefig(tmp)
    with atomic_dir("runs/gpt2") as tmp:      # tmp: a fresh sibling directory
        (tmp / "metrics.json").write_text(...)

Several outputs that belong together are committed together by nesting the contexts in one
``contextlib.ExitStack``: nothing is moved into place until every writer has finished.
:func:`check_file_dest` and :func:`check_dir_dest` reject a destination that cannot be written
*before* any work is done (``OutputError``).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputError


def _suffix(path: Path) -> str:
    return "".join(path.suffixes[-2:]) if path.suffix else ""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _special(path: Path) -> bool:
    """An existing destination that is not a regular file (``/dev/stdout``, ``/dev/null``, a FIFO)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


@contextmanager
def atomic_file(path: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success it replaces ``path``.

    The temporary keeps ``path``'s suffix, so writers that choose a format from the file name
    (matplotlib, pandas) behave as they would for ``path``. On any exception (including
    ``KeyboardInterrupt``) the temporary is removed and ``path`` is left as it was. A symlink is
    followed (its target is replaced); a destination that is not a regular file (``/dev/null``,
    ``/dev/stdout``, a FIFO) is written in place, since it cannot be replaced. The new file gets
    the usual permissions (``0o666`` minus the umask), not the temporary's ``0o600``.

    ``path`` is checked first (:func:`check_file_dest`); a file-system error while writing the
    temporary or moving it into place is an :class:`OutputError` naming ``path``, never the temporary.
    """
    check_file_dest(path, what)
    dest = Path(path).expanduser()
    if dest.is_symlink():
        dest = dest.resolve()
    if _special(dest):
        yield dest
        return
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{_suffix(dest)}", dir=dest.parent or ".")
    except OSError as err:
        raise _output_error(path, what, err) from None
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
        except OSError as err:  # the writer failed on the temporary (a full disk...): name the user's path
            if err.filename is None or os.fspath(err.filename) == name:
                raise _output_error(path, what, err) from None
            raise
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode) if dest.exists() else 0o666 & ~_umask()
            os.chmod(tmp, mode)
            os.replace(tmp, dest)
        except OSError as err:
            raise _output_error(path, what, err) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _output_error(path, what: str, err: OSError) -> OutputError:
    """An :class:`OutputError` naming the user's ``path`` (not a temporary) and the OS's reason."""
    reason = err.strerror or str(err) or type(err).__name__
    return OutputError(f"{what} {os.fspath(path)!r}: cannot write it ({reason})")


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success its files land in ``path``.

    When ``path`` does not exist the whole directory is renamed into place (atomic). When it
    exists (a directory), each file is moved in with ``os.replace`` only after all of them
    were written, so an interruption while writing leaves ``path`` untouched. Missing parent
    directories are created (and removed again if nothing was written).
    """
    dest = Path(path)
    created = _missing_parents(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
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
        for parent in created:  # deepest first; only the ones this call made, and only if empty
            try:
                parent.rmdir()
            except OSError:
                break
        raise


def _missing_parents(dest: Path) -> list[Path]:
    """Ancestors of ``dest`` that do not exist yet, deepest first."""
    out = []
    for parent in dest.absolute().parents:
        if parent.exists():
            break
        out.append(parent)
    return out


def _writable_dir(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def check_file_dest(path: str | os.PathLike, what: str = "output") -> Path:
    """Check, before any work, that a file can be written at ``path``; raise :class:`OutputError` if not.

    The parent directory must exist and be writable; ``path`` must not be a directory. An
    existing regular file is fine (it is replaced); so are ``/dev/null``-like destinations.
    """
    dest = Path(path).expanduser()
    if not str(path).strip():
        raise OutputError(f"{what}: empty file name")
    if dest.is_dir():
        raise OutputError(f"{what} {os.fspath(path)!r} is a directory; give a file name")
    if _special(dest):
        return dest
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"{what} {os.fspath(path)!r}: the directory {os.fspath(parent)!r} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{what} {os.fspath(path)!r}: {os.fspath(parent)!r} is not a directory")
    if not _writable_dir(parent) or (dest.exists() and not os.access(dest, os.W_OK)):
        raise OutputError(f"{what} {os.fspath(path)!r}: permission denied")
    if dest.exists() and not os.stat(dest).st_mode & 0o222:  # read-only for everyone (even root obeys this)
        raise OutputError(f"{what} {os.fspath(path)!r} is read-only; remove it or make it writable first")
    _probe(parent, path, what)
    return dest


def _probe(directory: Path, path, what: str, *, folder: bool = False) -> None:
    """Create and remove a temporary entry in ``directory``: ``os.access`` says yes to root even on
    ``/proc`` or a read-only mount, so only trying tells."""
    try:
        if folder:
            os.rmdir(tempfile.mkdtemp(prefix=".logitscope-probe.", dir=directory))
        else:
            fd, name = tempfile.mkstemp(prefix=".logitscope-probe.", dir=directory)
            os.close(fd)
            os.unlink(name)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise OutputError(f"{what} {os.fspath(path)!r}: cannot write in {os.fspath(directory)!r} ({reason})") from None


def check_dir_dest(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Check, before any work, that a directory can be written (or created) at ``path``.

    ``path`` must be an existing writable directory, or not exist with its nearest existing
    ancestor a writable directory. Raises :class:`OutputError` otherwise (e.g. ``path`` is a file).
    """
    dest = Path(path).expanduser()
    if not str(path).strip():
        raise OutputError(f"{what}: empty directory name")
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir():
            raise OutputError(f"{what} {os.fspath(path)!r} exists and is not a directory")
        if not _writable_dir(dest):
            raise OutputError(f"{what} {os.fspath(path)!r}: permission denied")
        _probe(dest, path, what, folder=True)
        return dest
    for parent in dest.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{what} {os.fspath(path)!r}: {os.fspath(parent)!r} is a file, not a directory")
            if not _writable_dir(parent):
                raise OutputError(f"{what} {os.fspath(path)!r}: cannot create it in {os.fspath(parent)!r}")
            _probe(parent, path, what, folder=True)
            break
    return dest
