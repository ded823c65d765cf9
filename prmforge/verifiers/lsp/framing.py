"""JSON-RPC 2.0 base-protocol framing for the Language Server Protocol.

A message on the wire is a header block (``Content-Length: N`` plus optional
headers, each ending in ``\\r\\n``), an empty line, then N bytes of UTF-8 JSON.
:func:`encode_message` writes one; :class:`FrameDecoder` is an incremental
parser fed with whatever chunks the pipe returns. Both are pure (no I/O).

The decoder refuses bodies larger than ``max_body_bytes`` and headers longer
than ``MAX_HEADER_BYTES`` with :class:`FrameError`: a server that emits a
gigabyte of JSON must not make the client buffer it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["DEFAULT_MAX_BODY_BYTES", "MAX_HEADER_BYTES", "FrameDecoder", "FrameError", "encode_message"]

MAX_HEADER_BYTES: Final = 4096
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_SEPARATOR: Final = b"\r\n\r\n"


class FrameError(ValueError):
    """The byte stream is not valid LSP framing (or breaks a size cap)."""


def encode_message(message: Mapping[str, Any]) -> bytes:
    """One framed message: the header, the blank line and the compact JSON body."""
    body = json.dumps(dict(message), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _content_length(header: bytes) -> int:
    length: int | None = None
    for raw_line in header.split(b"\r\n"):
        name, sep, value = raw_line.partition(b":")
        if not sep:
            raise FrameError(f"malformed header line {raw_line[:80]!r}")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise FrameError(f"bad Content-Length {value[:40]!r}") from None
    if length is None:
        raise FrameError("header has no Content-Length")
    if length < 0:
        raise FrameError(f"negative Content-Length {length}")
    return length


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes, get back every complete message so far.

    After a :class:`FrameError` the stream is unusable (framing is lost); the
    caller drops the connection.
    """

    def __init__(self, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._buffer = bytearray()
        self._body_length: int | None = None
        self._max_body = max_body_bytes

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self._buffer.extend(chunk)
        messages: list[dict[str, Any]] = []
        while True:
            if self._body_length is None:
                end = self._buffer.find(_SEPARATOR)
                if end < 0:
                    if len(self._buffer) > MAX_HEADER_BYTES:
                        raise FrameError(f"header longer than {MAX_HEADER_BYTES} bytes")
                    return messages
                if end > MAX_HEADER_BYTES:
                    raise FrameError(f"header longer than {MAX_HEADER_BYTES} bytes")
                length = _content_length(bytes(self._buffer[:end]))
                if length > self._max_body:
                    raise FrameError(f"message body of {length} bytes exceeds the cap of {self._max_body}")
                self._body_length = length
                del self._buffer[: end + len(_SEPARATOR)]
            if len(self._buffer) < self._body_length:
                return messages
            body = bytes(self._buffer[: self._body_length])
            del self._buffer[: self._body_length]
            self._body_length = None
            try:
                message = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise FrameError(f"body is not UTF-8 JSON: {err}") from None
            if not isinstance(message, dict):
                raise FrameError(f"body is a JSON {type(message).__name__}, not an object")
            messages.append(message)
