"""The one helper every seed and random stream of the project derives from (and generated ids).

One encoding: the SHA-256 of ``json.dumps([str(p) for p in parts])``; a seed
is the digest's top ``bits`` bits. Everything else is a form of that seed:

- :func:`derive_seed` -- an integer seed of ``bits`` bits (63 by default; MC request seeds use 31);
- :func:`unit` -- a float in [0, 1) (the top 53 bits, so every value is exact);
- :func:`rng` -- a :class:`random.Random` seeded with the 64-bit seed;
- :class:`SeedStem` -- the same three for parts that share a long head (hashed once), e.g. the
  simulated policy's ``(label, policy seed, request seed, prompt)`` followed by a completion index.

Each call site names itself with its own label (``"arith"``, ``"logic-rollout"``, ``"mc-step"``,
leading its parts; the pipeline stages' ``(seed, "generate", problem id)`` and ``(seed, "split",
question)`` carry theirs second, as they always have) so that no two sites draw the same stream.
The values are stable across processes, platforms and Python versions (unlike ``hash``):
``tests/schemas/test_seeds.py`` pins a few; ``scripts/pinned_numbers.py`` recomputes every number
the tests pin that depends on them.

>>> derive_seed("generate", 7, "arith-0") == derive_seed("generate", 7, "arith-0")
True
>>> SeedStem("stem", 1).derive_seed(2) == derive_seed("stem", 1, 2)
True
"""

from __future__ import annotations

import hashlib
import json
import random
from json.encoder import encode_basestring_ascii as _escape

__all__ = ["SeedStem", "derive_seed", "rng", "short_hash", "unit"]

_UNIT_BITS = 53  # a double's mantissa: k / 2**53 is exact and below 1


def _items(parts: tuple[object, ...]) -> str:
    """The items of ``json.dumps([str(p) for p in parts])``, without the brackets (the same C escaper)."""
    return ", ".join([_escape(str(p)) for p in parts])


def _encode(parts: tuple[object, ...]) -> bytes:
    return f"[{_items(parts)}]".encode()


def _check(bits: int) -> None:
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")


def derive_seed(*parts: object, bits: int = 63) -> int:
    """A ``bits``-bit seed (``0 <= seed < 2**bits``) from any parts, each read as ``str(part)``."""
    _check(bits)
    return int.from_bytes(hashlib.sha256(_encode(parts)).digest()[:8], "big") >> (64 - bits)


def unit(*parts: object) -> float:
    """A float in [0, 1) from ``parts``: ``derive_seed(*parts, bits=53) / 2**53``."""
    return derive_seed(*parts, bits=_UNIT_BITS) / (1 << _UNIT_BITS)


def rng(*parts: object) -> random.Random:
    """A random stream of its own from ``parts``: ``random.Random(derive_seed(*parts, bits=64))``."""
    return random.Random(derive_seed(*parts, bits=64))


class SeedStem:
    """The head of a part list, hashed once: ``SeedStem(*head).derive_seed(*tail)`` equals
    ``derive_seed(*head, *tail)`` (likewise :meth:`unit` and :meth:`rng`), without re-hashing the head.

    ``json.dumps`` of a list is ``[`` + the items joined by ``", "`` + ``]``, so the head's bytes
    (its encoding without the closing bracket) are a prefix of every longer list's.
    """

    __slots__ = ("_hash", "_sep")

    def __init__(self, *head: object) -> None:
        self._hash = hashlib.sha256(f"[{_items(head)}".encode())
        self._sep = ", " if head else ""

    def _top(self, tail: tuple[object, ...]) -> int:
        """The digest's top 64 bits."""
        h = self._hash.copy()
        h.update(f"{self._sep}{_items(tail)}]".encode() if tail else b"]")
        return int.from_bytes(h.digest()[:8], "big")

    def derive_seed(self, *tail: object, bits: int = 63) -> int:
        """:func:`derive_seed` of the head followed by ``tail``."""
        _check(bits)
        return self._top(tail) >> (64 - bits)

    def unit(self, *tail: object) -> float:
        """:func:`unit` of the head followed by ``tail``."""
        return (self._top(tail) >> (64 - _UNIT_BITS)) / (1 << _UNIT_BITS)

    def rng(self, *tail: object) -> random.Random:
        """:func:`rng` of the head followed by ``tail``."""
        return random.Random(self._top(tail))


def short_hash(*parts: object, chars: int = 24) -> str:
    """A hex id of ``chars`` characters from any JSON-serialisable parts (sorted keys).

    An identity, not a seed: parts keep their JSON types (``1`` and ``"1"`` differ), unlike
    :func:`derive_seed`, which reads every part as its ``str``.
    """
    blob = json.dumps(list(parts), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:chars]
