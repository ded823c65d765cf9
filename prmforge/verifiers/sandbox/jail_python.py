"""The two Python roles inside the jail, standard library only.

*Program process* (untrusted from its first line on): runs the program as ``__main__``, reports how
the program phase ended on its report pipe (informational only: the sample can write there too),
then, when there are tests, serves requests from the tests process over a pipe pair.

*Tests process* (trusted): forked before the program process, so the program never holds the tests
or the nonce, not even in freed memory. It executes the tests with the program's top-level names
bound to :class:`Remote` proxies: every call crosses the pipe and comes back as plain data (exact
builtin types, see ``codec.py``) or as an opaque handle, so every ``assert`` compares genuine
builtins in a process the program cannot touch (no ptrace, no /proc access to it, separate memory).
The program can only kill or stop it, which ends in FAIL or TIMEOUT, never PASS. On completion it
writes ``{"nonce": ..., "status": "ok"}`` to a pipe that only it holds; the host accepts PASS only
from that pipe, with that nonce, after the whole job has ended.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import sys
import traceback
from typing import Any

try:
    from prmforge.verifiers.sandbox import codec
except ImportError:  # inside the jail the bootstrap loads these modules under their bare names
    import codec  # type: ignore[no-redef, import-not-found]

MAX_SOURCE = 8 << 20
MAX_RPC = 16 << 20
MAX_ITEMS = 100_000
_PLAIN_OPS = frozenset({"call", "getattr", "setattr", "getitem", "setitem", "len", "iter", "repr", "str"})


# ---------------------------------------------------------------- program process


def run_program(prog_fd: int, report_fd: int, req_fd: int | None, rep_fd: int) -> None:
    source = _read_all(prog_fd, MAX_SOURCE)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    sys.argv = ["main.py"]
    status: dict[str, Any] = {"phase": "program", "outcome": "completed"}
    code = 0
    me = os.getpid()
    try:
        exec(compile(source, "main.py", "exec"), namespace)
    except SystemExit as stop:
        code = _exit_code(stop)
        status = {"phase": "program", "outcome": "exit", "code": code}
    except BaseException as err:  # the sample's own exception, whatever it is: report and exit 1
        code = 1
        status = {"phase": "program", "outcome": "exception", **describe(err)}
        with contextlib.suppress(Exception):
            traceback.print_exception(err, limit=-20)
    _flush()
    if os.getpid() != me:  # a process the program forked fell off the end of the program
        os._exit(code)
    with contextlib.suppress(OSError, codec.WireError):
        codec.write_frame(report_fd, status)
        os.close(report_fd)
    if code or req_fd is None or status["outcome"] != "completed":
        os._exit(code)
    _serve(namespace, req_fd, rep_fd)
    _flush()
    os._exit(0)


def _serve(namespace: dict[str, Any], req_fd: int, rep_fd: int) -> None:
    me = os.getpid()
    handles: list[object] = []

    def to_handle(obj: object) -> int:
        handles.append(obj)
        return len(handles) - 1

    def from_handle(ident: int) -> object:
        return handles[ident]

    while True:
        try:
            request = codec.read_frame(req_fd, MAX_RPC)
        except EOFError:
            return
        try:
            value = _apply(request, namespace, from_handle)
            reply: dict[str, Any] = {"v": codec.encode_value(value, to_handle)}
        except SystemExit as stop:  # the program exits while serving: the tests see it gone
            _flush()
            os._exit(_exit_code(stop))
        except BaseException as err:
            reply = {"e": describe(err)}
        if os.getpid() != me:  # a process forked during a call must not answer the tests
            _flush()
            os._exit(0)
        try:
            codec.write_frame(rep_fd, reply)
        except OSError:  # the tests process is gone: nothing left to serve
            return


def _apply(request: dict[str, Any], namespace: dict[str, Any], from_handle: Any) -> object:
    op = request["op"]
    if op == "names":
        return {k: v for k, v in namespace.items() if not (k.startswith("__") and k.endswith("__"))}
    if op not in _PLAIN_OPS:
        raise ValueError(f"unknown request {op!r}")
    target: Any = from_handle(request["h"])
    arg = codec.decode_value(request.get("a"), from_handle)
    if op == "call":
        return target(*arg, **codec.decode_value(request["k"], from_handle))
    if op == "getattr":
        return getattr(target, arg)
    if op == "setattr":
        setattr(target, arg[0], arg[1])
        return None
    if op == "getitem":
        return target[arg]
    if op == "setitem":
        target[arg[0]] = arg[1]
        return None
    if op == "len":
        return len(target)
    if op == "iter":
        items = []
        for item in target:
            items.append(item)
            if len(items) > MAX_ITEMS:
                raise MemoryError(f"iteration over {MAX_ITEMS} items")
        return items
    return repr(target) if op == "repr" else str(target)


# ---------------------------------------------------------------- tests process


class SampleGone(BaseException):
    """The program's interpreter exited or broke the protocol during the tests."""


class _Client:
    def __init__(self, req_fd: int, rep_fd: int) -> None:
        self.req_fd = req_fd
        self.rep_fd = rep_fd
        self.gone: str | None = None
        self.calls = 0

    def request(self, op: str, handle: int | None = None, arg: object = None, kwargs: object = None) -> Any:
        if self.gone:
            raise SampleGone(self.gone)
        message: dict[str, Any] = {"op": op, "h": handle, "a": codec.encode_value(arg, self._handle_of)}
        if kwargs is not None:
            message["k"] = codec.encode_value(kwargs, self._handle_of)
        self.calls += 1
        try:
            codec.write_frame(self.req_fd, message)
            reply = codec.read_frame(self.rep_fd, MAX_RPC)
            if "v" in reply:
                return codec.decode_value(reply["v"], lambda ident: Remote(self, ident))
            error = reply["e"]
        except (OSError, EOFError, codec.WireError, KeyError, TypeError) as err:
            self.gone = f"the program's interpreter is gone ({type(err).__name__}: {err})"
            raise SampleGone(self.gone) from None
        raise _rebuild(error)

    @staticmethod
    def _handle_of(obj: object) -> int:
        if type(obj) is Remote:
            return object.__getattribute__(obj, "_h")  # type: ignore[no-any-return]
        raise TypeError(f"only plain data and program objects can be passed to the program, not {type(obj)}")


class Remote:
    """A program object seen from the tests. Only data comes back; comparisons happen here.

    Truth value and ``==`` are not delegated: a program object is never equal to test data and has
    no truth value (``TypeError``), so a forged ``__eq__``/``__bool__`` cannot make an assert pass.
    """

    __slots__ = ("_c", "_h")

    def __init__(self, client: _Client, ident: int) -> None:
        object.__setattr__(self, "_c", client)
        object.__setattr__(self, "_h", ident)

    def _do(self, op: str, arg: object = None, kwargs: object = None) -> Any:
        return object.__getattribute__(self, "_c").request(
            op, object.__getattribute__(self, "_h"), arg, kwargs
        )

    def __call__(self, *args: object, **kwargs: object) -> Any:
        return self._do("call", list(args), kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._do("getattr", name)

    def __setattr__(self, name: str, value: object) -> None:
        self._do("setattr", [name, value])

    def __getitem__(self, key: object) -> Any:
        return self._do("getitem", key)

    def __setitem__(self, key: object, value: object) -> None:
        self._do("setitem", [key, value])

    def __len__(self) -> int:
        n = self._do("len")
        if type(n) is not int:
            raise TypeError("len() of a program object did not return an int")
        return n

    def __iter__(self) -> Any:
        return iter(self._do("iter"))

    def __bool__(self) -> bool:
        raise TypeError("a program object has no truth value in the tests; compare plain values")

    def __repr__(self) -> str:
        text = self._do("repr")
        return text if type(text) is str else "<program object>"

    def __str__(self) -> str:
        text = self._do("str")
        return text if type(text) is str else "<program object>"


def run_tests(tests_fd: int, report_fd: int, req_fd: int, rep_fd: int) -> None:
    payload = codec.read_frame(tests_fd, MAX_SOURCE)
    os.close(tests_fd)
    client = _Client(req_fd, rep_fd)
    report: dict[str, Any] = {"nonce": payload["nonce"], "status": "ok"}
    try:
        names = client.request("names")
        namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, **names}
        exec(compile(payload["source"], "tests.py", "exec"), namespace)
    except SystemExit as stop:
        if _exit_code(stop) != 0:
            report = {**report, "status": "failed", "error": "SystemExit", "message": str(stop.code)}
    except BaseException as err:  # any failure of the tests is the verdict's reason
        report = {**report, "status": "failed", **describe(err), "traceback": _format(err)}
        remote = getattr(err, "_sandbox_remote", None)
        if isinstance(remote, dict):
            report["remote"] = remote
    if client.gone and report["status"] == "ok":
        report = {**report, "status": "failed", "error": "SampleGone", "message": client.gone}
    report["calls"] = client.calls
    codec.write_frame(report_fd, report)
    os._exit(0)


# ---------------------------------------------------------------- helpers


def describe(err: BaseException) -> dict[str, Any]:
    """Type, nearest builtin type, message and errno of an exception, all as plain strings/ints."""
    builtin = "Exception"
    with contextlib.suppress(Exception):
        builtin = next(c.__name__ for c in type(err).__mro__ if c.__module__ == "builtins")
    message = "<unprintable>"
    with contextlib.suppress(Exception):
        message = str(err)[:2000]
    number = getattr(err, "errno", None) if isinstance(err, OSError) else None
    return {
        "error": str(type(err).__name__)[:200],
        "builtin": str(builtin)[:200],
        "message": str(message),
        "errno": number if type(number) is int else None,
    }


def _rebuild(error: dict[str, Any]) -> BaseException:
    """The program's exception as a genuine builtin exception in the tests (so ``except`` works)."""
    name = str(error.get("builtin", ""))
    cls = getattr(builtins, name, None)
    exc: BaseException
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(error.get("message", ""))
        except TypeError:
            exc = RuntimeError(f"{name}: {error.get('message', '')}")
    else:
        exc = RuntimeError(f"{error.get('error')}: {error.get('message', '')}")
    exc._sandbox_remote = {k: error.get(k) for k in ("error", "builtin", "errno")}  # type: ignore[attr-defined]
    return exc


def _format(err: BaseException) -> str:
    with contextlib.suppress(Exception):
        return "".join(traceback.format_exception(err))[-4000:]
    return ""


def _exit_code(stop: SystemExit) -> int:
    if stop.code is None:
        return 0
    if type(stop.code) is int:
        return stop.code & 0xFF
    with contextlib.suppress(Exception):
        print(stop.code, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _read_all(fd: int, limit: int) -> bytes:
    data = bytearray()
    while chunk := os.read(fd, 1 << 16):
        data += chunk
        if len(data) > limit:
            raise codec.WireError("source over the cap")
    os.close(fd)
    return bytes(data)
