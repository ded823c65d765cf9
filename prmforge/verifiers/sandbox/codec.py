"""Wire formats shared by the host and the in-jail harness. Standard library only: this file is
also executed inside the jail by Debian's ``/usr/bin/python3``.

* Frames: 4-byte big-endian length + JSON, on pipes (reports) and SOCK_SEQPACKET messages (control,
  with file descriptors attached).
* Values: the tests interpreter and the program interpreter exchange *plain data* only, encoded with
  exact type checks (``type(v) is int``, never ``isinstance``): ``None, bool, int, float, complex,
  str, bytes, list, tuple, dict, set, frozenset``. Anything else (a user class, a subclass of a
  builtin, a function) crosses as an opaque handle number. A decoded value is therefore always a
  genuine builtin, and an object whose ``__eq__`` always returns True can never reach a comparison.
"""

from __future__ import annotations

import array
import base64
import json
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

MAX_MESSAGE = 1 << 16
MAX_DEPTH = 64
_HEADER = struct.Struct(">I")


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
    data = json.dumps(obj, separators=(",", ":")).encode()
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


def parse_frame(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:
        raise WireError(f"malformed frame: {err}") from None


def frame_bytes(obj: object) -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
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
    data = json.dumps(obj, separators=(",", ":")).encode()
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
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return {"i": format(value, "x")}
    if kind is float:
        return {"f": value.hex()}  # type: ignore[attr-defined]
    if kind is complex:
        return {"c": [value.real.hex(), value.imag.hex()]}  # type: ignore[attr-defined]
    if kind is bytes:
        return {"b": base64.b64encode(value).decode()}  # type: ignore[arg-type]
    if kind is list:
        return [encode_value(v, to_handle, depth + 1) for v in value]  # type: ignore[attr-defined]
    if kind is tuple or kind is set or kind is frozenset:
        tag = {tuple: "t", set: "s", frozenset: "z"}[kind]
        return {tag: [encode_value(v, to_handle, depth + 1) for v in value]}  # type: ignore[attr-defined]
    if kind is dict:
        items = value.items()  # type: ignore[attr-defined]
        return {
            "d": [
                [encode_value(k, to_handle, depth + 1), encode_value(v, to_handle, depth + 1)]
                for k, v in items
            ]
        }
    return {"h": to_handle(value)}


def decode_value(obj: Any, from_handle: Callable[[int], object], depth: int = 0) -> Any:
    """Inverse of :func:`encode_value`; raises WireError on anything malformed."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if obj is None or type(obj) in (bool, str):
        return obj
    if type(obj) is list:
        return [decode_value(v, from_handle, depth + 1) for v in obj]
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
        items = [decode_value(v, from_handle, depth + 1) for v in body] if tag in "tszd" else None
        if tag == "t":
            return tuple(items or ())
        if tag == "s":
            return set(items or ())
        if tag == "z":
            return frozenset(items or ())
        if tag == "d":
            return dict(items or ())
    except (TypeError, ValueError, IndexError) as err:
        raise WireError(f"malformed value: {err}") from None
    raise WireError(f"unknown value tag {tag!r}")
