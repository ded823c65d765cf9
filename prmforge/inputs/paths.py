"""Check an input path before anything reads it, and digest what was read.

Every refusal is a :class:`ConfigError` naming ``inputs.<position>.path`` and
saying what the path *is* (a directory, a FIFO, a symlink loop, unreadable),
never just "not found" when something exists there.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import Literal

from prmforge.schemas.errors import ConfigError

Want = Literal["file", "directory", "any"]
_CHUNK = 1 << 20


def field_name(position: int, name: str = "path") -> str:
    """The config location of one of an input's fields: ``inputs.<position>.<name>``."""
    return f"inputs.{position}.{name}"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def check_input_path(path: Path, position: int, want: Want) -> Path:
    """The absolute, symlink-resolved ``path`` when it is a readable ``want`` (file, directory or either)."""
    where = f"{field_name(position)}: {path}"
    try:
        info = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ConfigError(f"{where} is a symlink loop") from None
        if err.errno == errno.ENOENT:
            if path.is_symlink():
                raise ConfigError(f"{where} is a broken symlink (to {os.readlink(path)})") from None
            raise ConfigError(f"{where} does not exist") from None
        if err.errno == errno.ENOTDIR:
            raise ConfigError(f"{where} does not exist (a parent of it is not a directory)") from None
        raise ConfigError(f"{where} cannot be inspected: {err.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        if want == "file":
            raise ConfigError(f"{where} is a directory, not a file")
        if not os.access(path, os.R_OK | os.X_OK):
            raise ConfigError(f"{where} is a directory that is not readable (permission denied)")
    elif stat.S_ISREG(info.st_mode):
        if want == "directory":
            raise ConfigError(f"{where} is a file, not a directory")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{where} is a file that is not readable (permission denied)")
    else:
        raise ConfigError(f"{where} is {_kind(info.st_mode)}, not a regular file")
    return path.resolve()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (hidden files and directories skipped), sorted."""
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            candidate = Path(directory) / name
            if not name.startswith(".") and candidate.is_file():
                found.append(candidate)
    return found
