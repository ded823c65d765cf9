"""Which runner schedules a build's shards (``runner.kind``), and the command line's overrides of it.

Every runner has the same shape, ``run(config, output, restart, workers) -> BuildResult``, commits
through the same build directory and manifest, and gives the same content hash. Beam and Ray are
optional extras, imported only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from prmforge.pipelines.config import BuildConfig
from prmforge.pipelines.runners.plan import BuildResult
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.schemas.errors import ConfigError

RUNNERS = ("local", "beam", "ray")


class Runner(Protocol):
    name: str

    def run(
        self, config: Any, output: Path, restart: bool = False, workers: int | None = None
    ) -> BuildResult: ...


def with_overrides(
    config: BuildConfig,
    runner: str | None = None,
    beam_runner: str | None = None,
    beam_options: Sequence[str] = (),
    ray_address: str | None = None,
) -> BuildConfig:
    """The config with the command line's runner choices applied (none of them changes the content)."""
    r = config.runner
    if runner is not None and runner not in RUNNERS:
        raise ConfigError(f"--runner: must be one of {', '.join(RUNNERS)} (got {runner!r})")
    beam = r.beam.model_copy(
        update={
            **({"runner": beam_runner} if beam_runner else {}),
            "options": [*r.beam.options, *beam_options],
        }
    )
    ray = r.ray.model_copy(update={"address": ray_address}) if ray_address else r.ray
    update = {"beam": beam, "ray": ray, **({"kind": runner} if runner else {})}
    return config.model_copy(update={"runner": r.model_copy(update=update)})


def make_runner(
    config: BuildConfig,
    on_event: Callable[[StageEvent], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> Runner:
    kind = config.runner.kind
    if kind == "local":
        from prmforge.pipelines.runners.local import LocalRunner

        return LocalRunner(on_event, on_plan)
    extra = {"beam": "apache_beam", "ray": "ray"}[kind]
    try:
        __import__(extra)
    except ImportError as err:
        raise ConfigError(
            f"runner.kind: {kind} needs the {kind} extra: pip install 'prmforge[{kind}]' ({err})"
        ) from None
    if kind == "beam":
        from prmforge.pipelines.runners.beam import BeamRunner

        return BeamRunner(on_event, on_plan)
    from prmforge.pipelines.runners.ray import RayRunner

    return RayRunner(on_event, on_plan)
