"""A policy that sends each request to the policy of its problem's domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prmforge.policies.base import GenerationRequest, GenerationResult, Policy

__all__ = ["DomainRouter"]


class DomainRouter:
    """Routes by ``request.problem.domain``: each batch is split by policy, sent once to each, and put
    back in request order.

    The fingerprint joins the distinct member fingerprints, sorted, with ``+`` (one member: its own
    fingerprint). It names every member whichever domains a batch (or shard) holds, so rollout ids
    and cache keys do not depend on how problems were packed into shards.
    """

    def __init__(self, routes: Mapping[str, Policy]) -> None:
        if not routes:
            raise ValueError("a domain router needs at least one route")
        self._routes = dict(routes)
        self._fingerprint = "+".join(sorted({policy.fingerprint for policy in self._routes.values()}))

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def routes(self) -> Mapping[str, Policy]:
        return dict(self._routes)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        groups: dict[int, tuple[Policy, list[int]]] = {}
        for index, request in enumerate(requests):
            domain = request.problem.domain
            policy = self._routes.get(domain)
            if policy is None:
                raise ValueError(
                    f"no policy serves the domain {domain!r} (problem {request.problem_id}); "
                    f"routes: {sorted(self._routes)}"
                )
            groups.setdefault(id(policy), (policy, []))[1].append(index)
        out: list[GenerationResult | None] = [None] * len(requests)
        for policy, indices in groups.values():
            results = policy.generate([requests[i] for i in indices])
            if len(results) != len(indices):
                count = f"{len(results)} results for {len(indices)} requests"
                raise ValueError(f"policy {policy.fingerprint!r} returned {count}")
            for index, result in zip(indices, results, strict=True):
                out[index] = result
        return [result for result in out if result is not None]
