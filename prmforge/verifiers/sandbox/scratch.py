"""The host side of a jail's writable space: one size- and inode-capped tmpfs per jail, mounted by the
host (root) under ``/tmp/prmforge-sandbox/<owner-pid>-<id>/fs`` and bound into the jail as the scratch
dir (``box``), ``/tmp`` (``tmp``) and ``/dev/shm`` (``shm``). Also: writing input files in and reading
named regular files back out without following links.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from prmforge.verifiers.sandbox.cgroup import owner_alive
from prmforge.verifiers.sandbox.limits import SandboxError, SandboxInputError, validate_name

BASE: Final = Path(tempfile.gettempdir()) / "prmforge-sandbox"
AREAS: Final = ("box", "tmp", "shm")
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MNT_DETACH: Final = 2
_EXEC_MAGIC: Final = (b"\x7fELF", b"#!")


class ScratchError(SandboxError, OSError):
    """The scratch filesystem could not be created or removed."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _base_dir() -> Path:
    BASE.mkdir(mode=0o711, exist_ok=True)
    info = BASE.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ScratchError(f"{BASE} is not a directory owned by uid {os.geteuid()}")
    os.chmod(BASE, 0o711)
    return BASE


class Scratch:
    """One jail's run directory and its tmpfs (a plain directory when ``mount`` is False)."""

    def __init__(self, *, size_bytes: int, inodes: int, owner_uid: int, mount: bool) -> None:
        self.root = _base_dir() / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.fs = self.root / "fs"
        self.mounted = False
        self.fs.mkdir(parents=True, mode=0o711)
        os.chmod(self.root, 0o711)
        try:
            if mount:
                options = f"size={size_bytes},nr_inodes={inodes},mode=0711,uid=0,gid=0".encode()
                libc = _libc()
                if libc.mount(b"tmpfs", str(self.fs).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
                    err = ctypes.get_errno()
                    raise ScratchError(err, f"mount tmpfs on {self.fs}: {os.strerror(err)}")
                self.mounted = True
            for area in AREAS:
                path = self.fs / area
                path.mkdir(mode=0o700)
                if owner_uid != os.geteuid():
                    os.chown(path, owner_uid, owner_uid)
        except OSError:
            self.remove()
            raise

    def area(self, name: str) -> Path:
        return self.fs / name

    def write_files(self, files: Mapping[str, bytes], owner_uid: int) -> None:
        """Write input files into the (fresh, still empty) scratch dir."""
        box = self.area("box")
        for name, data in files.items():
            validate_name(name)
            if not isinstance(data, bytes | bytearray):
                raise SandboxInputError(f"file {name!r}: bytes expected")
            target = box / name
            for parent in reversed(target.relative_to(box).parents[:-1]):
                directory = box / parent
                if not directory.is_dir():
                    directory.mkdir(mode=0o700)
                    os.chown(directory, owner_uid, owner_uid)
            mode = 0o755 if bytes(data[:4]).startswith(_EXEC_MAGIC) else 0o644
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            except FileExistsError:
                raise SandboxInputError(f"file {name!r} given twice") from None
            try:
                with os.fdopen(fd, "wb") as sink:
                    sink.write(data)
            except OSError as err:
                raise SandboxInputError(f"file {name!r} does not fit in the scratch dir: {err}") from None
            os.chown(target, owner_uid, owner_uid)

    def collect(self, names: Sequence[str], cap_bytes: int) -> dict[str, bytes]:
        """Regular files named in ``names`` (relative to the scratch dir); symlinks anywhere on the path,
        special files and files over ``cap_bytes`` are refused (left out of the result)."""
        found: dict[str, bytes] = {}
        for name in names:
            validate_name(name)
            data = _read_no_follow(self.area("box"), name.split("/"), cap_bytes)
            if data is not None:
                found[name] = data
        return found

    def remove(self) -> None:
        if self.mounted:
            if _libc().umount2(str(self.fs).encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                raise ScratchError(err, f"umount {self.fs}: {os.strerror(err)}")
            self.mounted = False
        shutil.rmtree(self.root, ignore_errors=True)


def _read_no_follow(base: Path, parts: list[str], cap_bytes: int) -> bytes | None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(base, flags | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = nxt
        try:
            leaf = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            return None
        with os.fdopen(leaf, "rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > cap_bytes:
                return None
            return source.read(cap_bytes + 1)[:cap_bytes]
    finally:
        os.close(fd)


def sweep_stale() -> list[str]:
    """Unmount and delete run directories whose owner process is gone."""
    removed: list[str] = []
    if not BASE.is_dir():
        return removed
    for entry in BASE.iterdir():
        if not owner_alive(entry.name):
            with contextlib.suppress(OSError):
                _libc().umount2(str(entry / "fs").encode(), MNT_DETACH)
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    return removed
