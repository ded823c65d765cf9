"""Build the model engine an engine config names (the one place that dispatches on ``kind``)."""

from __future__ import annotations

from prmforge.policies.base import Policy
from prmforge.schemas.engines import OpenAIEngineConfig, TransformersEngineConfig, VllmEngineConfig

__all__ = ["build_engine"]


def build_engine(
    config: TransformersEngineConfig | OpenAIEngineConfig | VllmEngineConfig, *, workers: int = 1
) -> Policy:
    """The engine for ``config``; heavy libraries are imported only for the kind asked for.

    ``workers`` is how many worker processes share this machine (a CPU engine divides the cores).
    """
    if isinstance(config, TransformersEngineConfig):
        from prmforge.policies.hf_engine import TransformersPolicy

        return TransformersPolicy(config, workers=workers)
    if isinstance(config, OpenAIEngineConfig):
        from prmforge.policies.openai_http import OpenAIPolicy

        policy: Policy = OpenAIPolicy(config)
        return policy
    if isinstance(config, VllmEngineConfig):
        from prmforge.policies.vllm_engine import VllmPolicy

        return VllmPolicy(config)
    raise TypeError(f"not a model engine config: {type(config).__name__}")
