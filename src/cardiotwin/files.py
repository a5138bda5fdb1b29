"""The one way cardiotwin writes files: nothing half-written is ever left under a final name.

Every output is first written to a hidden temporary name beside its target (same suffix, so
writers that pick the format from the extension still work), and renamed into place only when
all outputs of the call are complete and flushed to the disk (``os.replace`` is atomic on
one file system; the files and then their folders are fsynced, so a power cut leaves the old
file or the whole new one). An error removes the temporary files and any folder created for
them that stayed empty. Used by every layer (meshing, solvers, pipeline), so it lives at the
package root.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path


def _temporary_name(path: Path) -> Path:
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.parent / f".{stem}.{secrets.token_hex(6)}.tmp{suffix}"


def _sync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk: renamed into place unsynced,
    a file could be empty after a power cut although its name says it is complete."""
    if not (path.is_file() or path.is_dir()):
        return  # a writer that wrote its output under other names
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # file systems that cannot sync a folder (some network mounts)
        pass
    finally:
        os.close(fd)


def write_all_or_nothing(writers: Mapping[Path, Callable[[Path], object]]) -> list[Path]:
    """Run ``writer(temporary_path)`` for each target path, then rename all into place.

    Returns the final paths. If any writer raises, no new file appears under a final name.
    """
    targets: dict[str, Path] = {}
    for path in writers:
        key = os.path.realpath(path)
        if key in targets:  # one would silently replace the other
            raise ValueError(f"two outputs of one call name the same file: {targets[key]}, {path}")
        targets[key] = Path(path)
        for parent in Path(path).parents:
            if parent.exists() and not parent.is_dir():
                raise NotADirectoryError(f"cannot write {path}: {parent} is a file, not a folder")
    created_dirs: list[Path] = []
    staged: list[tuple[Path, Path]] = []
    try:
        for path in writers:
            for parent in reversed(Path(path).parents):
                if not parent.exists():
                    parent.mkdir()
                    created_dirs.append(parent)
        for path, writer in writers.items():
            path = Path(path)
            tmp = _temporary_name(path)
            staged.append((tmp, path))
            writer(tmp)
            _sync(tmp)
        for tmp, path in staged:
            os.replace(tmp, path)
        for folder in {path.parent for _, path in staged}:
            _sync(folder)  # the renames themselves
    except BaseException:
        # the clean-up must not hide the error that brought us here
        for tmp, _ in staged:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        for folder in reversed(created_dirs):
            try:
                if folder.exists() and not any(folder.iterdir()):
                    folder.rmdir()
            except OSError:
                pass
        raise
    return [path for _, path in staged]


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Write one file with ``writer(temporary_path)`` and rename it into place."""
    return write_all_or_nothing({Path(path): writer})[0]


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(data: object, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON (NaN allowed) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=True) + "\n")
