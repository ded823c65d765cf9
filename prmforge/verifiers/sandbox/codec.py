"""Wire formats shared by the host and the in-jail harness. Standard library only: this file is
also executed inside the jail by Debian's ``/usr/bin/python3``.

* Frames: 4-byte big-endian length + JSON, on pipes (reports) and SOCK_SEQPACKET messages (control,
  with file descriptors attached).
* Values: the tests interpreter and the program interpreter exchange *plain data* only, encoded with
  exact type checks (``type(v) is int``, never ``isinstance``): ``None, bool, int, float, complex,
  str, bytes, list, tuple, dict, set, frozenset``. Anything else (a user class, a subclass of a
  builtin, a function) crosses as an opaque handle number. A decoded value is therefore always a
  genuine builtin, and an object whose ``__eq__`` always returns True can never reach a comparison.
  The common values travel as themselves: ``None``, ``bool``, ``str``, lists, ints below 2**63 and
  floats as JSON numbers (``float.__repr__`` round-trips exactly; ``NaN``/``Infinity`` included); a
  bigger int as ``{"i": hex}`` (no decimal-digit limit), the rest as one-key tagged objects.
* Exceptions cross as ``{"error", "builtin", "message", "errno"}`` (:func:`describe_error`); the
  tests side accepts only that exact shape (:func:`checked_error`) and raises the nearest genuine
  builtin exception class (:func:`rebuild_error`), so ``except ValueError`` in the tests works.
* The tests side of the RPC (:class:`RpcClient`, :class:`Remote`) lives here too; the program side
  (``jail_python._serve``) runs in the untrusted interpreter and is trusted for nothing.
* RPC pipes are read through :class:`FrameReader` (one ``read`` per frame in the common case) and
  every frame is written with one ``write`` (header and body together).
"""

from __future__ import annotations

import array
import base64
import builtins
import contextlib
import json
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

MAX_MESSAGE = 1 << 16
MAX_DEPTH = 64
MAX_ERROR_TEXT = 2000
MAX_NAMES = 10_000
_ERROR_KEYS = frozenset({"error", "builtin", "message", "errno"})
READ_CHUNK = 1 << 16
_HEADER = struct.Struct(">I")
_WORD = 1 << 63
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per frame
_AS_IS = frozenset({str, int, float, bool, type(None)})  # JSON scalars that decode as themselves
_COLLECTIONS: dict[str, Callable[[list[Any]], object]] = {"t": tuple, "s": set, "z": frozenset, "d": dict}


class WireError(Exception):
    """A malformed, oversized or truncated frame or value."""


class Handle:
    """An opaque reference to an object that stays in the program interpreter."""

    __slots__ = ("ident",)

    def __init__(self, ident: int) -> None:
        self.ident = ident


# ---------------------------------------------------------------- framing


def write_frame(fd: int, obj: object) -> None:
    """Write one frame; blocks until written."""
    data = _DUMPS(obj).encode()
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def read_exact(fd: int, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = os.read(fd, n - len(chunks))
        if not chunk:
            raise EOFError("pipe closed mid-frame" if chunks else "pipe closed")
        chunks += chunk
    return bytes(chunks)


def read_frame(fd: int, limit: int) -> Any:
    """Read one frame of at most ``limit`` bytes; EOFError on a closed pipe, WireError if malformed."""
    (size,) = _HEADER.unpack(read_exact(fd, _HEADER.size))
    if size > limit:
        raise WireError(f"frame of {size} bytes over the {limit}-byte cap")
    return parse_frame(read_exact(fd, size))


class FrameReader:
    """Frames from one pipe, read in chunks: a small frame costs one ``read`` instead of two."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.buf = bytearray()

    def read(self) -> Any:
        """The next frame; EOFError on a closed pipe, WireError if malformed or over the limit."""
        self._fill(_HEADER.size)
        (size,) = _HEADER.unpack_from(self.buf)
        if size > self.limit:
            raise WireError(f"frame of {size} bytes over the {self.limit}-byte cap")
        end = _HEADER.size + size
        self._fill(end)
        data = bytes(self.buf[_HEADER.size : end])
        del self.buf[:end]
        return parse_frame(data)

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = os.read(self.fd, max(n - len(self.buf), READ_CHUNK))
            if not chunk:
                raise EOFError("pipe closed mid-frame" if self.buf else "pipe closed")
            self.buf += chunk


def parse_frame(data: bytes) -> Any:
    try:
        return json.loads(data.decode())  # json.loads(bytes) sniffs the encoding in Python
    except (ValueError, RecursionError) as err:
        raise WireError(f"malformed frame: {err}") from None


def frame_bytes(obj: object) -> bytes:
    data = _DUMPS(obj).encode()
    return _HEADER.pack(len(data)) + data


def split_frame(buf: bytes | bytearray, limit: int) -> Any:
    """Decode a whole buffer that must hold exactly one frame (a report read to EOF by the host)."""
    if len(buf) < _HEADER.size:
        raise WireError("no frame")
    (size,) = _HEADER.unpack(bytes(buf[: _HEADER.size]))
    if size > limit or len(buf) != _HEADER.size + size:
        raise WireError("frame size does not match the data")
    return parse_frame(bytes(buf[_HEADER.size :]))


def send_msg(sock: socket.socket, obj: object, fds: list[int] | tuple[int, ...] = ()) -> None:
    data = _DUMPS(obj).encode()
    if len(data) > MAX_MESSAGE:
        raise WireError("control message too large")
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], ancillary)


def recv_msg(sock: socket.socket, max_fds: int = 0) -> tuple[Any, list[int]]:
    """One SEQPACKET message and its descriptors; EOFError when the peer has gone."""
    fds = array.array("i")
    data, ancdata, flags, _ = sock.recvmsg(MAX_MESSAGE + 1, socket.CMSG_LEN(max(1, max_fds) * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    received = list(fds)
    if not data:
        for fd in received:
            os.close(fd)
        raise EOFError("control socket closed")
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(received) > max_fds:
        for fd in received:
            os.close(fd)
        raise WireError("control message truncated or carrying unexpected descriptors")
    return parse_frame(data), received


# ---------------------------------------------------------------- values


def encode_value(value: object, to_handle: Callable[[object], int], depth: int = 0) -> Any:
    """Plain data by value (exact builtin types), everything else as ``{"h": id}``."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is float:
        return value
    if kind is int:
        return value if -_WORD <= value < _WORD else {"i": format(value, "x")}  # type: ignore[operator]
    if kind is complex:
        return {"c": [value.real.hex(), value.imag.hex()]}  # type: ignore[attr-defined]
    if kind is bytes:
        return {"b": base64.b64encode(value).decode()}  # type: ignore[arg-type]
    if kind is list:
        return _encode_items(value, to_handle, depth + 1)  # type: ignore[arg-type]
    if kind is tuple or kind is set or kind is frozenset:
        tag = {tuple: "t", set: "s", frozenset: "z"}[kind]
        return {tag: _encode_items(value, to_handle, depth + 1)}  # type: ignore[arg-type]
    if kind is dict:
        items = value.items()  # type: ignore[attr-defined]
        return {
            "d": [
                [encode_value(k, to_handle, depth + 1), encode_value(v, to_handle, depth + 1)]
                for k, v in items
            ]
        }
    return {"h": to_handle(value)}


def _encode_items(values: list[Any], to_handle: Callable[[object], int], depth: int) -> list[Any]:
    out = []
    for v in values:  # the common scalars inline: a call per element is most of the cost
        kind = type(v)
        if kind is str or kind is float or kind is bool or v is None or (kind is int and -_WORD <= v < _WORD):
            out.append(v)
        else:
            out.append(encode_value(v, to_handle, depth))
    return out


def decode_value(obj: Any, from_handle: Callable[[int], object], depth: int = 0) -> Any:
    """Inverse of :func:`encode_value`; raises WireError on anything malformed."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    kind = type(obj)
    if obj is None or kind is bool or kind is str or kind is float or kind is int:
        return obj
    if kind is list:
        return [v if type(v) in _AS_IS else decode_value(v, from_handle, depth + 1) for v in obj]
    if type(obj) is not dict or len(obj) != 1:
        raise WireError("malformed value")
    ((tag, body),) = obj.items()
    try:
        if tag == "i":
            return int(body, 16)
        if tag == "f":
            return float.fromhex(body)
        if tag == "c":
            return complex(float.fromhex(body[0]), float.fromhex(body[1]))
        if tag == "b":
            return base64.b64decode(body, validate=True)
        if tag == "h":
            if type(body) is not int:
                raise WireError("malformed handle")
            return from_handle(body)
        if tag in _COLLECTIONS:
            if type(body) is not list:
                raise WireError(f"malformed {tag!r} value")
            return _COLLECTIONS[tag](decode_value(body, from_handle, depth))
    except (TypeError, ValueError, IndexError) as err:
        raise WireError(f"malformed value: {err}") from None
    raise WireError(f"unknown value tag {tag!r}")


# ---------------------------------------------------------------- exceptions


def describe_error(err: BaseException) -> dict[str, Any]:
    """Type, nearest builtin type, message and errno of an exception, all as plain strings/ints."""
    builtin = "Exception"
    with contextlib.suppress(Exception):
        builtin = next(c.__name__ for c in type(err).__mro__ if c.__module__ == "builtins")
    number = getattr(err, "errno", None) if isinstance(err, OSError) else None
    return {
        "error": safe_str(lambda: type(err).__name__)[:200],
        "builtin": safe_str(lambda: builtin)[:200],
        "message": safe_str(lambda: err)[:MAX_ERROR_TEXT],
        "errno": number if type(number) is int and 0 <= number < 1 << 16 else None,
    }


def checked_error(error: object) -> dict[str, Any] | None:
    """An error description sent by the program, if it is exactly well-formed data; else None."""
    if type(error) is not dict or not error.keys() <= _ERROR_KEYS:
        return None
    fields = (error.get("error"), error.get("builtin"), error.get("message", ""))
    if not all(type(f) is str and len(f) <= MAX_ERROR_TEXT for f in fields):
        return None
    number = error.get("errno")
    if number is not None and not (type(number) is int and 0 <= number < 1 << 16):
        return None
    return {"error": fields[0], "builtin": fields[1], "message": fields[2], "errno": number}


def rebuild_error(error: dict[str, Any]) -> BaseException:
    """A checked error as a genuine builtin exception (an ``Exception`` subclass, never SystemExit)."""
    name, message = error["builtin"], error["message"]
    cls = getattr(builtins, name, None) if name.isidentifier() and not name.startswith("_") else None
    exc: BaseException
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(message)
        except Exception:
            exc = RuntimeError(f"{name}: {message}")
    else:
        exc = RuntimeError(f"{error['error']}: {message}")
    exc._sandbox_remote = {k: error[k] for k in ("error", "builtin", "errno")}  # type: ignore[attr-defined]
    return exc


def safe_str(make: Callable[[], object]) -> str:
    """``str(make())``, or ``"<unprintable>"`` if that raises anything (a program object may)."""
    try:
        text = str(make())
    except BaseException:  # a program object's __str__ may fail, exit or find the program gone
        return "<unprintable>"
    return text if type(text) is str else "<unprintable>"


# ---------------------------------------------------------------- the tests side of the RPC


class SampleGone(BaseException):
    """The program's interpreter exited or broke the protocol during the tests."""


class RpcClient:
    """The tests side of the RPC: every reply is validated as data; a malformed one, or the pipe
    closing, marks the program as gone (:class:`SampleGone`, which ``except Exception`` cannot catch).
    """

    def __init__(self, req_fd: int, rep_fd: int, limit: int) -> None:
        self.req_fd = req_fd
        self.reader = FrameReader(rep_fd, limit)
        self.gone: str | None = None
        self.calls = 0

    def names(self) -> dict[str, int]:
        """The program's top-level names and their handles (malformed entries dropped; the caller
        decides which it uses). The reply also means the program phase is over."""
        offered = self._exchange({"op": "names"}).get("n")
        if type(offered) is not dict or len(offered) > MAX_NAMES:
            return {}
        return {k: v for k, v in offered.items() if type(k) is str and type(v) is int and 0 <= v < 1 << 31}

    def request(self, op: str, handle: int, arg: object = None, kwargs: object = None) -> Any:
        message: dict[str, Any] = {"op": op, "h": handle, "a": encode_value(arg, self._handle_of)}
        if kwargs:
            message["k"] = encode_value(kwargs, self._handle_of)
        if op == "call":
            self.calls += 1
        reply = self._exchange(message)
        if "v" in reply:
            try:
                return decode_value(reply["v"], lambda ident: Remote(self, ident))
            except WireError as err:
                raise self._lost(f"the program sent a malformed value ({err})") from None
        error = checked_error(reply.get("e"))
        if error is None:
            raise self._lost("the program sent a malformed reply")
        raise rebuild_error(error)

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.gone:
            raise SampleGone(self.gone)
        try:
            write_frame(self.req_fd, message)
            reply = self.reader.read()
        except (OSError, EOFError, WireError) as err:
            raise self._lost(f"the program's interpreter is gone ({type(err).__name__}: {err})") from None
        if type(reply) is not dict or len(reply) != 1:
            raise self._lost("the program sent a malformed reply")
        return reply

    def _lost(self, why: str) -> SampleGone:
        self.gone = why
        return SampleGone(why)

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

    def __init__(self, client: RpcClient, ident: int) -> None:
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
