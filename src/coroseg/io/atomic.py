"""Atomic output: write next to the target, then rename, so no half-written file is ever seen."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from coroseg.errors import CorosegError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp / mkdtemp create private files (0600) and folders (0700); outputs should follow the
# user's umask like any other file or folder
_MODE = 0o666 & ~_umask()
_FOLDER_MODE = 0o777 & ~_umask()


def _suffixes(path: Path) -> str:
    # keep the full extension (".nii.gz") so writers that pick a format by name still work
    name = path.name
    for ext in (".nii.gz", ".vtp", ".gml", ".mrk.json"):
        if name.endswith(ext):
            return ext
    return path.suffix


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On any exception the temporary file is removed and the target is left as it was.
    """
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + _suffixes(path), dir=parent)
        os.close(fd)
    except OSError as exc:
        raise CorosegError(f"cannot write output folder ({exc.strerror})", parent) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _MODE)
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise CorosegError(f"cannot write file ({exc.strerror})", path) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _temp_dir(parent: Path, prefix: str) -> Path:
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as exc:
        raise CorosegError(f"cannot write output folder ({exc.strerror})", parent) from None


@contextlib.contextmanager
def staged_files(folder: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary folder inside ``folder``; on success move what was written there
    into ``folder`` (sub-folders kept, existing files of the same name replaced).

    The outputs of one unit of work (a case's mask, centerlines and mesh) then appear together
    or not at all: on any exception, or when a move fails, everything written or moved so far
    is removed and ``folder`` keeps only what it had. A kill leaves at most the hidden folder.
    """
    folder = Path(folder)
    tmp = _temp_dir(folder, ".coroseg-partial-")
    moved: list[Path] = []
    try:
        yield tmp
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        for f in files:
            dst = folder / f.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dst)
            moved.append(dst)
    except OSError as exc:
        for m in moved:
            m.unlink(missing_ok=True)
        raise CorosegError(f"cannot write file ({exc.strerror})", _unstaged(exc.filename, tmp, folder)) from None
    except CorosegError as exc:
        for m in moved:
            m.unlink(missing_ok=True)
        if exc.path is None or tmp not in exc.path.parents:
            raise
        raise type(exc)(exc.problem, _unstaged(exc.path, tmp, folder)) from None  # name the real target
    except BaseException:
        for m in moved:
            m.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unstaged(path, tmp: Path, folder: Path) -> Path:
    """Where a file of the staging folder ``tmp`` was meant to go in ``folder``."""
    if path is None:
        return folder
    path = Path(path)
    return folder / path.relative_to(tmp) if tmp in path.parents else path


@contextlib.contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``target``; on success it becomes ``target``.

    An earlier ``target`` is replaced only once the new one is complete (moved aside, the new
    folder renamed in, the old one deleted), so a failed or interrupted re-run leaves the
    earlier result exactly as it was.
    """
    target = Path(target)
    tmp = _temp_dir(target.parent, f".{target.name}.partial-")
    os.chmod(tmp, _FOLDER_MODE)
    old = None
    try:
        yield tmp
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
    except OSError as exc:
        if old is not None and not target.exists():
            os.replace(old, target)
            old = None
        raise CorosegError(f"cannot write output folder ({exc.strerror})", target) from None
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old, target)
            old = None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def locked(folder: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``folder`` for the block: processes writing into one
    folder (two ``predict`` runs, job-array parts) take turns at a read-modify-write of a shared
    file. The lock is on the folder itself, so no lock file is left behind; where ``fcntl`` is
    missing (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise CorosegError(f"cannot write output folder ({exc.strerror})", folder) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: object) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(obj: object) -> object:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
