"""The Beam runner's shard transforms: each attempt of a shard is a DoFn, failures are tagged outputs.

:func:`expand_shards` chains ``MAX_ATTEMPTS + 1`` ParDos of :class:`RunShard`, each wrapped in
``with_exception_handling``: a shard whose stages raise, or whose worker process dies (the stage graph
runs in a spawned subprocess of the Beam worker, :class:`~.beam_worker.ShardPool`, so a SIGKILL or
the OOM killer is a ``BrokenProcessPool`` in the Beam worker), leaves on the dead-letter output, is
counted (the ``failed/shard-NNNNN`` metric) and goes, reshuffled onto any worker, to the next attempt.
The attempt after ``MAX_ATTEMPTS`` failures records the shard as poisoned (``BuildDir.record_poison``)
and runs it once more, its rows quarantined at load with the reason, so the build commits; if even
that fails, the pipeline fails. Every attempt commits through the shard executor's markers, so a
retried shard (or a bundle that a runner retries itself) reuses what an earlier attempt committed.

The quarantined rows of every committed shard are a tagged output, batched (``BatchElements``) and
counted per stage (the ``quarantined/<stage>`` metrics, read by the driver).

Beam's own ``use_subprocess`` is not used: it forks the Beam worker, whose gRPC threads then crash or
hang the child now and then (seen with 2.77); a spawned process starts clean.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import TaggedOutput

from prmforge.pipelines.runners.beam_worker import (
    Attempt,
    ShardJob,
    SharedWorker,
)
from prmforge.pipelines.runners.faults import MAX_ATTEMPTS, describe
from prmforge.pipelines.runners.plan import ShardTask

# mypy: disable-error-code="no-untyped-call"
# (apache_beam 2.77 declares py.typed but leaves most of its API unannotated.)

log = logging.getLogger(__name__)

NAMESPACE = "prmforge"  # of the Beam metrics the driver reads
DONE, QUARANTINED, FAILED = "done", "quarantined", "failed"


class RunShard(beam.DoFn):
    """One attempt of each shard it receives. ``setup`` builds the stage graph's Worker once per Beam
    worker process (in a subprocess when ``isolate``), shared with the retry steps' DoFns, and
    ``teardown`` closes it once the last of them is done."""

    def __init__(self, job: ShardJob, isolate: bool, eager: bool) -> None:
        super().__init__()
        self.job = job
        self.isolate = isolate
        self.eager = eager  # the first attempt's step; a retry step rarely gets a shard
        self._worker: SharedWorker | None = None

    def setup(self) -> None:
        self._worker = SharedWorker.acquire(self.job, self.isolate)
        if self.eager:
            self._worker.start()

    def process(self, attempt: Attempt) -> Iterator[Any]:
        if self._worker is None:
            raise RuntimeError("RunShard.process before setup")
        out = self._worker.run(attempt)
        yield (out.shard, out.attempt)
        for row in out.quarantined:
            yield TaggedOutput(QUARANTINED, row)

    def teardown(self) -> None:
        if self._worker is not None:
            SharedWorker.release(self.job)
            self._worker = None


class NoteFailure(beam.DoFn):
    """A failed attempt (a dead letter): counted, logged and sent on to the next attempt; after the
    last one (the shard already poisoned) the pipeline fails."""

    def __init__(self, attempt: int, last: bool) -> None:
        super().__init__()
        self.attempt = attempt
        self.last = last

    def process(self, bad: tuple[Attempt, tuple[type, str, list[str]]]) -> Iterator[Attempt]:
        attempt, (kind, text, _trace) = bad
        shard = attempt.task.shard
        error = describe(kind, text)
        Metrics.counter(NAMESPACE, f"failed/shard-{shard:05d}").inc()
        if self.last:
            raise RuntimeError(
                f"shard {shard} failed its Beam worker even with its rows quarantined at load: {error}"
            )
        log.warning("shard %d: attempt %d failed: %s", shard, self.attempt, error)
        yield Attempt(attempt.task, (*attempt.errors, error))


class CountQuarantined(beam.DoFn):
    """A batch of quarantined rows (stage, reason): counted per stage for the driver."""

    def process(self, batch: list[tuple[str, str]]) -> Iterator[None]:
        for stage, n in Counter(stage for stage, _ in batch).items():
            Metrics.counter(NAMESPACE, f"quarantined/{stage}").inc(n)
        yield from ()


def expand_shards(pipeline: Any, tasks: list[ShardTask], job: ShardJob, isolate: bool) -> Any:
    """Every attempt of every task; returns the PCollection of (shard, attempt) of committed shards."""
    if not tasks:  # no Worker is built (nor a process started) for a build whose shards are committed
        return pipeline | "NoShards" >> beam.Create([]).with_output_types(tuple[int, int])
    current = pipeline | "Plan" >> beam.Create([Attempt(t) for t in tasks]) | "Spread" >> beam.Reshuffle()
    done, quarantined = [], []
    for n in range(1, MAX_ATTEMPTS + 2):
        last = n == MAX_ATTEMPTS + 1
        attempt = beam.ParDo(RunShard(job, isolate, eager=n == 1)).with_output_types(
            tuple[int, int], **{QUARANTINED: tuple[str, str]}
        )
        out = current | f"Attempt{n}" >> attempt.with_outputs(QUARANTINED, main=DONE).with_exception_handling(
            dead_letter_tag=FAILED
        )
        done.append(out[DONE])
        quarantined.append(out[QUARANTINED])
        failed = out[FAILED] | f"Failed{n}" >> beam.ParDo(NoteFailure(n, last))
        if not last:
            current = failed | f"Respread{n}" >> beam.Reshuffle()
    _ = (
        quarantined
        | "AllQuarantined" >> beam.Flatten()
        | "BatchQuarantined" >> beam.BatchElements(min_batch_size=1, max_batch_size=512)
        | "CountQuarantined" >> beam.ParDo(CountQuarantined())
    )
    return done | "AllDone" >> beam.Flatten()
