"""The two Python roles inside the jail, standard library only.

*Program process* (untrusted from its first line on): runs the program as a real ``__main__`` module,
reports how the program phase ended on its report pipe (informational: the sample can write there
too) and, when there are tests and the program ended with status 0, serves the tests' requests. The
server runs in the untrusted interpreter (the program can patch ``_apply``, ``codec``...): nothing it
sends is trusted.

*Tests process* (trusted): forked before the program process, so the program never holds the tests
or the nonce. It decides everything itself, never on the program's word:

* The tests run as a fresh module registered as ``sys.modules["__main__"]`` (``unittest.main()``
  finds them), whose globals hold the real builtins, what the tests bind themselves, and proxies
  (``codec.Remote``) for the program's top-level names except dunders, non-identifiers, builtin and
  standard-library module names and names the tests bind (read from their bytecode); a stdlib module
  the tests use without importing it is imported here; ``__name__`` is set last. Explicit entry
  points (``entry_points`` in the payload, or a ``# prmforge: entry_points = f, C`` comment line)
  narrow the program's names to those, which may then shadow a builtin or module name.
* Replies are validated as data (``codec.RpcClient``): plain values of exact builtin types or opaque
  handles; anything malformed ends the tests as if the program had gone.
* ``SystemExit`` gives CPython's status. unittest TestCases run (``unittest.main()`` or, if no test
  ran, here); a failing test is named, TestCases of which no test ran fail. A failure names the line
  of tests.py and its statement.

The program can only kill or stop the tests process (FAIL or TIMEOUT, never PASS). The report goes
to a pipe only this process holds; the host accepts PASS only from there, with this run's nonce.
"""

from __future__ import annotations

import _sitebuiltins
import builtins
import contextlib
import keyword
import opcode
import os
import re
import sys
import traceback
import types
from typing import Any

try:
    from prmforge.verifiers.sandbox import codec
except ImportError:  # inside the jail the bootstrap loads these modules under their bare names
    import codec  # type: ignore[no-redef, import-not-found]

MAX_SOURCE = 8 << 20
MAX_RPC = 16 << 20
MAX_ITEMS = 100_000
MAX_STATEMENT = 300
_PLAIN_OPS = frozenset({"call", "getattr", "setattr", "getitem", "setitem", "len", "iter", "repr", "str"})
_RESERVED = frozenset(dir(builtins)) | {"exit", "quit", "help", "copyright", "credits", "license"}
_NO_AUTO_IMPORT = frozenset({"this", "antigravity"})
_DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*prmforge:[ \t]*entry_points[ \t]*=(.*)$", re.MULTILINE)
_OPS = opcode.opmap
_LOADS = frozenset(_OPS[n] for n in ("LOAD_NAME", "LOAD_GLOBAL", "LOAD_FROM_DICT_OR_GLOBALS") if n in _OPS)
_TOP_STORES = frozenset(_OPS[n] for n in ("STORE_NAME", "DELETE_NAME") if n in _OPS)
_ANY_STORES = frozenset(_OPS[n] for n in ("STORE_GLOBAL", "DELETE_GLOBAL") if n in _OPS)
_LOAD_GLOBAL = _OPS["LOAD_GLOBAL"]
_EXTENDED_ARG = _OPS["EXTENDED_ARG"]
_GLOBAL_SHIFT = 1 if sys.version_info >= (3, 11) else 0  # LOAD_GLOBAL's name index is arg >> 1


# ---------------------------------------------------------------- program process


def run_program(prog_fd: int, report_fd: int, req_fd: int | None, rep_fd: int) -> None:
    source = _read_all(prog_fd, MAX_SOURCE)
    _add_site_builtins()
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    sys.argv = ["main.py"]
    status: dict[str, Any] = {"phase": "program", "outcome": "completed"}
    code = 0
    me = os.getpid()
    try:
        exec(compile(source, "main.py", "exec"), main.__dict__)
    except SystemExit as stop:
        code = exit_status(stop)
        status = {"phase": "program", "outcome": "exit", "code": code}
    except BaseException as err:  # the sample's own exception, whatever it is: report and exit 1
        code = 1
        status = {"phase": "program", "outcome": "exception", **codec.describe_error(err)}
        with contextlib.suppress(Exception):
            traceback.print_exception(err, limit=-20)
    _flush()
    if os.getpid() != me:  # a process the program forked fell off the end of the program
        os._exit(code)
    with contextlib.suppress(OSError, codec.WireError):
        codec.write_frame(report_fd, status)
        os.close(report_fd)
    if code or req_fd is None or status["outcome"] == "exception":
        os._exit(code)
    _serve(main.__dict__, req_fd, rep_fd)
    _flush()
    os._exit(0)


def _serve(namespace: dict[str, Any], req_fd: int, rep_fd: int) -> None:
    me = os.getpid()
    handles: list[object] = []
    reader = codec.FrameReader(req_fd, MAX_RPC)

    def to_handle(obj: object) -> int:
        handles.append(obj)
        return len(handles) - 1

    def from_handle(ident: int) -> object:
        if ident < 0:
            raise IndexError("no such program object")
        return handles[ident]

    while True:
        try:
            request = reader.read()
        except EOFError:
            return
        reply: dict[str, Any]
        try:
            if type(request) is dict and request.get("op") == "names":
                items = list(namespace.items())
                reply = {"n": {k: to_handle(v) for k, v in items if type(k) is str and not _dunder(k)}}
            else:
                reply = {"v": codec.encode_value(_apply(request, from_handle), to_handle)}
        except SystemExit as stop:  # the program exits while serving: the tests see it gone
            _flush()
            os._exit(exit_status(stop))
        except BaseException as err:
            reply = {"e": codec.describe_error(err)}
        if os.getpid() != me:  # a process forked during a call must not answer the tests
            _flush()
            os._exit(0)
        try:
            codec.write_frame(rep_fd, reply)
        except OSError:  # the tests process is gone: nothing left to serve
            return


def _apply(request: dict[str, Any], from_handle: Any) -> object:
    op = request["op"]
    if op not in _PLAIN_OPS:
        raise ValueError(f"unknown request {op!r}")
    target: Any = from_handle(request["h"])
    arg = codec.decode_value(request.get("a"), from_handle)
    if op == "call":
        return target(*arg, **(codec.decode_value(request["k"], from_handle) if "k" in request else {}))
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


def run_tests(tests_fd: int, report_fd: int, req_fd: int, rep_fd: int) -> None:
    payload = codec.read_frame(tests_fd, MAX_SOURCE)
    os.close(tests_fd)
    source: str = payload["source"]
    client = codec.RpcClient(req_fd, rep_fd, MAX_RPC)
    report: dict[str, Any] = {"nonce": payload["nonce"], "status": "ok"}
    sys.argv = ["tests.py"]
    _add_site_builtins()
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    failure: dict[str, Any] | None = None
    unit: _UnitLog | None = None
    try:
        unit = _UnitLog() if "unittest" in source else None
        code = compile(source, "tests.py", "exec")
        bind(main.__dict__, client, code, entry_points(payload.get("entry_points"), source))
        exec(code, main.__dict__)
    except SystemExit as stop:
        if status := exit_status(stop):
            failure = {**_failure(stop, source), "message": f"the tests exited with status {status}"}
    except BaseException as err:  # any failure of the tests is the verdict's reason
        failure = _failure(err, source)
    if unit is not None:
        failure = unit.verdict(main, source, failure)
        if unit.cases:
            report["tests_ran"] = unit.started - unit.skipped
    if failure is None and client.gone:
        failure = {"error": "SampleGone", "builtin": "BaseException", "message": client.gone[:2000]}
    if failure is not None:
        report.update(status="failed", **failure)
    report["calls"] = client.calls
    codec.write_frame(report_fd, report)
    os._exit(0)


def bind(
    ns: dict[str, Any], client: codec.RpcClient, code: types.CodeType, explicit: tuple[str, ...] | None
) -> None:
    """Fill the tests' globals (see the module docstring); waits for the end of the program phase."""
    offered = client.names()
    loads, stores = global_names(code, offered.keys() | sys.stdlib_module_names)
    for name in offered if explicit is None else explicit:
        ident = offered.get(name)
        if ident is None or name in stores or not plain_name(name) or (explicit is None and _reserved(name)):
            continue
        ns[name] = codec.Remote(client, ident)
    for name in sorted(loads - stores - ns.keys()):
        if name in sys.stdlib_module_names and name not in _RESERVED and name not in _NO_AUTO_IMPORT:
            with contextlib.suppress(Exception):
                ns[name] = __import__(name)
    ns["__builtins__"] = builtins
    ns["__name__"] = "__main__"


def global_names(code: types.CodeType, wanted: set[str] | frozenset[str]) -> tuple[set[str], set[str]]:
    """Of ``wanted``, the names the code reads as globals and those it binds as globals (at module
    level, or declared ``global``). Searches the bytecode for the exact instructions (C speed)."""
    loads: set[str] = set()
    stores: set[str] = set()
    todo = [(code, True)]
    while todo:
        co, top = todo.pop()
        todo.extend((c, False) for c in co.co_consts if type(c) is types.CodeType)
        raw = co.co_code
        for name in wanted.intersection(co.co_names):
            k = co.co_names.index(name)
            if any(_has(raw, op, k) for op in (_ANY_STORES | _TOP_STORES if top else _ANY_STORES)):
                stores.add(name)
            reads = [(op, k) for op in _LOADS if op != _LOAD_GLOBAL]
            reads += [(_LOAD_GLOBAL, k << _GLOBAL_SHIFT | low) for low in range(1 << _GLOBAL_SHIFT)]
            if any(_has(raw, op, arg) for op, arg in reads):
                loads.add(name)
    return loads, stores


def _has(raw: bytes, op: int, arg: int) -> bool:
    """Whether the wordcode holds instruction ``op`` with argument ``arg`` (EXTENDED_ARG included)."""
    units = [arg >> shift & 0xFF for shift in (24, 16, 8) if arg >> shift]
    pattern = bytes(b for high in units for b in (_EXTENDED_ARG, high)) + bytes((op, arg & 0xFF))
    start = 0
    while (i := raw.find(pattern, start)) >= 0:
        if i % 2 == 0 and not (i >= 2 and raw[i - 2] == _EXTENDED_ARG):
            return True
        start = i + 1
    return False


def entry_points(value: object, source: str) -> tuple[str, ...] | None:
    """The explicit entry points: the payload's list, else the directive comments; None if neither."""
    if value is None:
        found = _DIRECTIVE.findall(source)
        if not found:
            return None
        value = [n for text in found for n in re.split(r"[\s,]+", text) if n]
    if type(value) is not list or not all(plain_name(n) for n in value):
        raise ValueError(f"malformed entry_points: {value!r}"[:300])
    return tuple(value)


def plain_name(name: object) -> bool:
    """A name the tests may receive from the program: an identifier, not a keyword, not a dunder."""
    return type(name) is str and name.isidentifier() and not keyword.iskeyword(name) and not _dunder(name)


def _reserved(name: str) -> bool:
    return name in _RESERVED or name in sys.stdlib_module_names


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


class _UnitLog:
    """What unittest did in this process: hooks on ``unittest.TestResult`` count every test that
    starts or is skipped and record every failure, whichever runner the tests use."""

    def __init__(self) -> None:
        import unittest

        self.unittest = unittest
        self.started = 0
        self.skipped = 0
        self.failures: list[tuple[str, BaseException | None, Any]] = []
        self.cases: list[type] = []
        base = unittest.TestResult

        def hook(name: str, before: Any) -> None:
            original = getattr(base, name)

            def wrapped(result: Any, *args: Any) -> Any:
                before(*args)
                return original(result, *args)

            setattr(base, name, wrapped)

        hook("startTest", lambda test: self._count(1, 0))
        hook("addSkip", lambda test, reason: self._count(0, 1))
        hook("addError", self._failed)
        hook("addFailure", self._failed)
        hook("addSubTest", self._sub_test)
        hook("addUnexpectedSuccess", lambda test: self._failed(test, None))

    def _count(self, started: int, skipped: int) -> None:
        self.started += started
        self.skipped += skipped

    def _sub_test(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            self._failed(subtest, err)

    def _failed(self, test: Any, err: Any) -> None:
        name = codec.safe_str(test.id).replace("__main__.", "")
        self.failures.append((name, err[1] if err else None, err[2] if err else None))

    def verdict(self, module: types.ModuleType, source: str, failure: dict[str, Any] | None) -> Any:
        """The first failed test, else ``failure``, else: the module's TestCases, run here if no test
        ran yet, must have run at least one test."""
        self.cases = [
            v
            for v in list(module.__dict__.values())
            if isinstance(v, type) and issubclass(v, self.unittest.TestCase) and v.__module__ == "__main__"
        ]
        if failure is None and self.cases and not self.started and not self.failures:
            try:
                self.unittest.defaultTestLoader.loadTestsFromModule(module).run(self.unittest.TestResult())
            except BaseException as err:
                failure = _failure(err, source)
        if self.failures:
            name, first, tb = self.failures[0]
            if first is None:
                found = {"error": "UnexpectedSuccess", "builtin": "Exception", "message": "", "errno": None}
            else:
                found = _failure(first, source, tb)
            return {**found, "test": name[:500]}
        if failure is None and self.cases and self.started <= self.skipped:
            message = (
                f"{len(self.cases)} unittest TestCase class(es) but no test ran ({self.skipped} skipped)"
            )
            return {"error": "NoTestsRan", "builtin": "Exception", "message": message, "errno": None}
        return failure


# ---------------------------------------------------------------- helpers


def _failure(err: BaseException, source: str, tb: Any = None) -> dict[str, Any]:
    """``describe`` plus the line of tests.py where it happened and that statement's source."""
    found = codec.describe_error(err)
    line = None
    tb = tb or err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "tests.py":
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None and isinstance(err, SyntaxError) and err.filename == "tests.py":
        line = err.lineno
    line = line if type(line) is int and line > 0 else None
    found["line"] = line
    found["source"] = "" if line is None else statement(source, line)
    remote = getattr(err, "_sandbox_remote", None)
    if type(remote) is dict:
        found["remote"] = remote
    found["traceback"] = codec.safe_str(lambda: "".join(traceback.format_exception(err)))[-4000:]
    return found


def statement(source: str, line: int) -> str:
    """The simple statement of ``source`` at ``line``, on one line (a compound one: that line)."""
    lines = source.splitlines()
    text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    if len(source) <= 1 << 20:
        with contextlib.suppress(Exception):
            import ast

            best: ast.stmt | None = None
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno):
                    best = node if best is None or node.lineno >= best.lineno else best
            if best is not None and not hasattr(best, "body"):
                text = " ".join((ast.get_source_segment(source, best) or text).split())
    return text[:MAX_STATEMENT]


def exit_status(stop: SystemExit) -> int:
    """The process status CPython gives ``SystemExit(code)``: None 0, an int (bool too) & 0xFF, else 1
    (after printing the code to stderr, as CPython does)."""
    code = stop.code
    if code is None:
        return 0
    if isinstance(code, int) and issubclass(type(code), int):  # not a forged ``__class__``
        return int.__int__(code) & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _add_site_builtins() -> None:
    """``exit`` and ``quit``, as ``site`` gives every interpreter (the jail runs Python with -S)."""
    for name in ("exit", "quit"):
        setattr(builtins, name, _sitebuiltins.Quitter(name, "Ctrl-D (i.e. EOF)"))


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
