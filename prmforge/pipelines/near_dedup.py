"""Near-duplicate rollouts of one problem: MinHash signatures of word shingles (``split.near_dedup``).

Pure functions and one small index, over texts; the ``dedup`` global stage
(:mod:`prmforge.pipelines.runners.finalize`) feeds them rows in shard order, then row order.

- :func:`shingles` -- the set of ``size``-word shingles of a row's completions (its steps joined by a
  space, split on whitespace); a text of fewer words is one shingle, the empty text the empty shingle.
- :func:`jaccard` -- the exact Jaccard similarity of two shingle sets (what the estimate estimates).
- :class:`Signer` -- MinHash signatures (datasketch, seeded; the ``legacy`` permutation scheme asked
  for by name where datasketch offers several, so 1.x and 2.x give the same signatures).
- :func:`estimated_jaccard` -- the share of equal signature positions (datasketch's
  ``MinHash.jaccard``).
- :class:`NearDuplicates` -- per problem, the signatures of the rows kept so far; a row whose
  estimated Jaccard with one of them is ``>= threshold`` is a near duplicate. A problem's signatures
  are dropped with :meth:`NearDuplicates.forget` once its rows are all seen.

Every row is compared with every kept row of its problem (no LSH banding: a problem holds tens to
hundreds of rows, where the exact comparison is cheap and has no false negatives), so a decision is
exactly "estimated Jaccard >= threshold", never a matter of banding luck, and never looks at another
problem: nothing depends on how problems are packed into shards.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from datasketch import MinHash  # type: ignore[import-untyped]

from prmforge.schemas.seeds import derive_seed

Signature = npt.NDArray[np.uint64]
_SCHEME = {"scheme": "legacy"} if "scheme" in inspect.signature(MinHash.__init__).parameters else {}


def shingles(completions: Sequence[str], size: int) -> frozenset[str]:
    """The distinct ``size``-word shingles of the steps' text (words joined by one space)."""
    if size < 1:
        raise ValueError(f"a shingle has at least one word, got {size}")
    words = " ".join(completions).split()
    if len(words) <= size:
        return frozenset({" ".join(words)})
    return frozenset(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def minhash_seed(seed: int) -> int:
    """The MinHash seed of a build (numpy's RandomState takes 32 bits)."""
    return derive_seed("near-dedup", seed, bits=32)


class Signer:
    """MinHash signatures of ``num_perm`` permutations, seeded; the permutations are drawn once."""

    def __init__(self, num_perm: int, seed: int) -> None:
        self.num_perm = num_perm
        self.seed = seed
        self._first = MinHash(num_perm=num_perm, seed=seed, **_SCHEME)
        self._permutations = self._first.permutations

    def signature(self, shingle_set: Iterable[str]) -> Signature:
        m = MinHash(num_perm=self.num_perm, seed=self.seed, permutations=self._permutations, **_SCHEME)
        m.update_batch([s.encode("utf-8") for s in sorted(shingle_set)])
        values: Signature = np.asarray(m.hashvalues, dtype=np.uint64)
        return values


def estimated_jaccard(a: Signature, b: Signature) -> float:
    """The share of positions where two signatures agree."""
    if a.shape != b.shape:
        raise ValueError(f"signatures of {a.shape} and {b.shape} permutations")
    return float(np.count_nonzero(a == b)) / float(a.shape[0])


@dataclass(frozen=True, slots=True)
class Match:
    """The kept row a near duplicate resembles most (the earliest such row on a tie)."""

    kept_id: str
    estimate: float


class NearDuplicates:
    """The kept rows' signatures, per problem; :meth:`check` decides one row and keeps it if it is new."""

    def __init__(self, threshold: float, signer: Signer) -> None:
        self.threshold = threshold
        self.signer = signer
        self._kept: dict[str, tuple[list[str], list[Signature]]] = {}

    def check(self, problem_id: str, example_id: str, signature: Signature) -> Match | None:
        """The earlier kept row of the problem this row nearly duplicates, or None (then it is kept)."""
        ids, signatures = self._kept.setdefault(problem_id, ([], []))
        if signatures:
            agree = np.count_nonzero(np.vstack(signatures) == signature, axis=1)
            best = int(np.argmax(agree))  # the first of the most similar
            estimate = float(agree[best]) / float(signature.shape[0])
            if estimate >= self.threshold:
                return Match(ids[best], estimate)
        ids.append(example_id)
        signatures.append(signature)
        return None

    def check_text(
        self, problem_id: str, example_id: str, completions: Sequence[str], size: int
    ) -> Match | None:
        return self.check(problem_id, example_id, self.signer.signature(shingles(completions, size)))

    def forget(self, problem_id: str) -> None:
        """Every row of the problem was seen: its signatures are no longer needed."""
        self._kept.pop(problem_id, None)

    @property
    def problems_held(self) -> int:
        return len(self._kept)
