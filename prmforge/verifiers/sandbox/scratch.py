"""The host side of a jail's writable space, and writing input files in / reading named regular
files back out without following links.

:class:`Scratch`: one size- and inode-capped tmpfs per jail, mounted by the host (root) under
``/tmp/prmforge-sandbox/<owner-pid>-<id>/fs`` and bound into the jail as the scratch dir (``box``),
``/tmp`` (``tmp``) and ``/dev/shm`` (``shm``); a plain directory for ``rlimits-only`` (under
``/tmp/prmforge-sandbox-<uid>`` when not root).

:class:`JailBox`: without root the jail's ``/box`` is bubblewrap's own tmpfs, which only exists in the
jail's mount namespace. The host (the owner of the jail's user namespace, so allowed to although the
worker is not dumpable) opens the worker's ``/proc/<pid>/root/box`` once the worker is ready and keeps
that descriptor: files go in and out through it, and it keeps the tmpfs alive after the jail's last
process exited, until :meth:`JailBox.remove`.
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


def base_path() -> Path:
    """Run directories of this uid: :data:`BASE` for root, ``BASE-<uid>`` for anyone else."""
    return BASE if os.geteuid() == 0 else BASE.with_name(f"{BASE.name}-{os.geteuid()}")


def _base_dir() -> Path:
    base = base_path()
    base.mkdir(mode=0o711, exist_ok=True)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ScratchError(f"{base} is not a directory owned by uid {os.geteuid()}")
    os.chmod(base, 0o711)
    return base


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
        fd = os.open(self.area("box"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            write_files(fd, files, owner_uid)
        finally:
            os.close(fd)

    def collect(self, names: Sequence[str], cap_bytes: int) -> dict[str, bytes]:
        """Regular files named in ``names`` (relative to the scratch dir); symlinks anywhere on the path,
        special files and files over ``cap_bytes`` are refused (left out of the result)."""
        fd = os.open(self.area("box"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return collect(fd, names, cap_bytes)
        finally:
            os.close(fd)

    def remove(self) -> None:
        if self.mounted:
            if _libc().umount2(str(self.fs).encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                raise ScratchError(err, f"umount {self.fs}: {os.strerror(err)}")
            self.mounted = False
        shutil.rmtree(self.root, ignore_errors=True)


class JailBox:
    """The jail's own ``/box`` (bubblewrap's tmpfs), reached through the worker's root directory."""

    def __init__(self, worker_pid: int, box: str) -> None:
        try:
            self.fd = os.open(
                f"/proc/{worker_pid}/root/{box.lstrip('/')}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )
        except OSError as err:
            raise ScratchError(err.errno, f"cannot open the jail's {box}: {err.strerror}") from None

    def write_files(self, files: Mapping[str, bytes], owner_uid: int) -> None:
        write_files(self.fd, files, owner_uid)

    def collect(self, names: Sequence[str], cap_bytes: int) -> dict[str, bytes]:
        return collect(self.fd, names, cap_bytes)

    def remove(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def write_files(box: int, files: Mapping[str, bytes], owner_uid: int) -> None:
    """Write ``files`` under the directory ``box`` (a descriptor), never following a link; new
    directories and files belong to ``owner_uid``."""
    chown = owner_uid != os.geteuid()
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    for name, data in files.items():
        validate_name(name)
        if not isinstance(data, bytes | bytearray):
            raise SandboxInputError(f"file {name!r}: bytes expected")
        *parents, leaf = name.split("/")
        fd = os.dup(box)
        try:
            for part in parents:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
                    if chown:
                        os.chown(part, owner_uid, owner_uid, dir_fd=fd, follow_symlinks=False)
                nxt = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = nxt
            mode = 0o755 if bytes(data[:4]).startswith(_EXEC_MAGIC) else 0o644
            try:
                out = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=fd)
            except FileExistsError:
                raise SandboxInputError(f"file {name!r} given twice") from None
            with os.fdopen(out, "wb") as sink:
                if chown:
                    os.fchown(sink.fileno(), owner_uid, owner_uid)
                try:
                    sink.write(data)
                    sink.flush()
                except OSError as err:
                    raise SandboxInputError(f"file {name!r} does not fit in the scratch dir: {err}") from None
        finally:
            os.close(fd)


def collect(box: int, names: Sequence[str], cap_bytes: int) -> dict[str, bytes]:
    """Regular files named in ``names`` under the directory ``box`` (a descriptor); symlinks anywhere
    on the path, special files and files over ``cap_bytes`` are refused (left out of the result)."""
    found: dict[str, bytes] = {}
    for name in names:
        validate_name(name)
        data = _read_no_follow(box, name.split("/"), cap_bytes)
        if data is not None:
            found[name] = data
    return found


def _read_no_follow(base: int, parts: list[str], cap_bytes: int) -> bytes | None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.dup(base)
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
    base = base_path()
    if not base.is_dir():
        return removed
    for entry in base.iterdir():
        if not owner_alive(entry.name):
            with contextlib.suppress(OSError):
                _libc().umount2(str(entry / "fs").encode(), MNT_DETACH)
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    return removed
