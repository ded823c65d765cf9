"""Which language server to start, and the jail it runs in.

:func:`pyright_spec` runs the JavaScript bundle that the PyPI ``pyright``
wheel ships (``pyright/dist/langserver.index.js``) directly on the machine's
``node``. The wheel's Python wrapper is never called, because it may check
PyPI for a newer version or ``npm install`` one; running the bundle downloads
nothing.

:func:`jail_command` wraps a server command so that it runs

- in bubblewrap when ``bwrap`` is on the PATH: new user, pid, network, IPC,
  UTS and cgroup namespaces (``--unshare-all``, so no network at all), all
  capabilities dropped, a read-only view of ``/usr`` (and the merged-usr
  links) plus the paths the server needs, an empty tmpfs root with a private
  ``/tmp`` and an empty ``/workspace``, a cleared environment, and
  ``--die-with-parent``;
- as the host user ``nobody`` (uid 65534) when we are root and the
  server's files are readable by others, so that even the jail's user
  namespace maps to an unprivileged host uid (bubblewrap then needs
  unprivileged user namespaces, as the sandbox does);
- under ``prlimit`` in every case: no core files, at most 1024 open files,
  files of at most 64 MiB;
- with a heap cap passed to node (``--max-old-space-size``). Address-space
  limits are not used: V8 reserves far more virtual memory than it touches.

Without bubblewrap the server still gets a cleared environment, an empty
temporary working directory and the rlimits, but shares the host's network
and file system view; :attr:`JailedCommand.isolation` says which one applied.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "JAIL_WORKSPACE",
    "JailedCommand",
    "ServerNotFoundError",
    "ServerSpec",
    "jail_command",
    "pyright_spec",
]

JAIL_WORKSPACE: Final = "/workspace"
NOBODY: Final = 65534
_FILE_SIZE_LIMIT: Final = 64 * 1024 * 1024
_OPEN_FILES_LIMIT: Final = 1024
_SERVER_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
Isolation = Literal["bwrap", "none"]


class ServerNotFoundError(FileNotFoundError):
    """The language server (or the runtime it needs) is not installed."""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start one language server over stdio.

    ``settings`` answers the server's ``workspace/configuration`` requests
    (looked up by dotted section, e.g. ``"python.analysis"``);
    ``read_paths`` are the host paths the jail must expose read-only.
    """

    name: str
    version: str
    argv: tuple[str, ...]
    language_id: str
    file_suffix: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    initialization_options: Mapping[str, Any] = field(default_factory=dict)
    read_paths: tuple[str, ...] = ()

    def section(self, name: str | None) -> Any:
        """The settings under a dotted section name (None or "" = all of them; absent = None)."""
        node: Any = self.settings
        for part in (name or "").split("."):
            if not part:
                continue
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node


@dataclass(frozen=True, slots=True)
class JailedCommand:
    """A command ready for ``subprocess.Popen``: argv, environment, the workspace path it sees and the
    host uid/gid to start it as (None: keep ours)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    workspace: str
    isolation: Isolation
    uid: int | None = None


_PYRIGHT_SETTINGS: Final[Mapping[str, Any]] = {
    "python": {
        "analysis": {
            "typeCheckingMode": "basic",
            "diagnosticMode": "openFilesOnly",
            "autoSearchPaths": False,
            "useLibraryCodeForTypes": False,
            "autoImportCompletions": False,
        }
    },
    "pyright": {"disableLanguageServices": False, "disableOrganizeImports": True},
}


def pyright_spec(*, node: str | None = None, heap_mib: int = 1024) -> ServerSpec:
    """Pyright from the installed ``pyright`` wheel, run on ``node`` (default: the one on the PATH).

    Raises :class:`ServerNotFoundError` with an install hint when the wheel or node is missing.
    """
    node_path = node or shutil.which("node")
    if node_path is None:
        raise ServerNotFoundError("node is not on the PATH; install Node.js >= 18 (apt-get install nodejs)")
    spec = importlib.util.find_spec("pyright")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    dist = next(
        (Path(p) / "dist" for p in locations if (Path(p) / "dist" / "langserver.index.js").is_file()), None
    )
    if dist is None:
        raise ServerNotFoundError(
            "the pyright wheel with its bundled server is not installed; pip install 'pyright==1.1.414'"
        )
    version = str(json.loads((dist / "package.json").read_text(encoding="utf-8")).get("version", "unknown"))
    return ServerSpec(
        name="pyright",
        version=version,
        argv=(node_path, f"--max-old-space-size={heap_mib}", str(dist / "langserver.index.js"), "--stdio"),
        language_id="python",
        file_suffix=".py",
        settings=_PYRIGHT_SETTINGS,
        read_paths=(str(dist), os.path.realpath(node_path)),
    )


def _bwrap_argv(bwrap: str, spec: ServerSpec) -> list[str]:
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), str(host)]
    # The private /tmp comes before the server's own paths, so a server installed under /tmp (a
    # checkout or virtualenv there) is bound over it instead of hidden by it.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", JAIL_WORKSPACE]
    for path in spec.read_paths:
        if not path.startswith("/usr/"):
            argv += ["--ro-bind", path, path]
    argv += ["--clearenv", "--setenv", "PATH", _SERVER_PATH, "--setenv", "HOME", "/tmp"]
    argv += ["--setenv", "LANG", "C.UTF-8", "--chdir", JAIL_WORKSPACE, "--"]
    return argv


def _others_can_read(path: str) -> bool:
    """Whether a user with no rights but "others" can reach and read ``path`` (dirs need r and x)."""
    target = Path(path)
    try:
        for parent in target.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        mode = target.stat().st_mode
    except OSError:
        return False
    needed = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & needed == needed


def jail_command(spec: ServerSpec, *, host_workspace: str, use_bwrap: bool = True) -> JailedCommand:
    """``spec.argv`` wrapped in the jail described in the module docstring.

    ``host_workspace`` is an empty directory the caller owns: it is the
    server's working directory and workspace root when bubblewrap is absent.
    """
    limits = [f"--nofile={_OPEN_FILES_LIMIT}", "--core=0", f"--fsize={_FILE_SIZE_LIMIT}"]
    prlimit = shutil.which("prlimit")
    prefix = [prlimit, *limits, "--"] if prlimit else []
    env = {"PATH": _SERVER_PATH, "HOME": host_workspace, "LANG": "C.UTF-8"}
    bwrap = shutil.which("bwrap") if use_bwrap else None
    if bwrap is not None:
        argv = [*prefix, *_bwrap_argv(bwrap, spec), *spec.argv]
        uid = NOBODY if os.geteuid() == 0 and all(map(_others_can_read, spec.read_paths)) else None
        return JailedCommand(argv=tuple(argv), env=env, workspace=JAIL_WORKSPACE, isolation="bwrap", uid=uid)
    return JailedCommand(argv=(*prefix, *spec.argv), env=env, workspace=host_workspace, isolation="none")
