"""Several shards per worker (pipelines/overlap.py): the baton's rules, exactly, then builds.

The baton's tests drive two threads with events, so every interleaving they assert is forced, not
timed. The builds check what a user relies on: the same content hash whatever the number of shards
at once, engine calls never overlapping each other, one shard's CPU work running while another's
engine call is in flight, and the local runner's retries when shards share a worker.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import small_config

from prmforge.pipelines.overlap import Baton, Cancelled, run_threads
from prmforge.pipelines.runners.faults import FAULT_ENV
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.plan import BuildResult
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.policies.base import GenerationRequest, GenerationResult
from prmforge.policies.simulated import SimulatedPolicy

WAIT = 10.0  # seconds an event may take before the test fails (never reached when the rule holds)


def _started(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# --- the baton ----------------------------------------------------------------------------------------


def test_cpu_work_runs_one_thread_at_a_time() -> None:
    baton, log = Baton(), []
    a_holds, a_may_go = threading.Event(), threading.Event()

    def a() -> None:
        with baton.held():
            log.append("a in")
            a_holds.set()
            a_may_go.wait(WAIT)
            log.append("a out")

    def b() -> None:
        with baton.held():
            log.append("b in")

    ta = _started(a)
    assert a_holds.wait(WAIT)
    tb = _started(b)
    time.sleep(0.05)  # b has had every chance to enter; it must not have
    assert log == ["a in"]
    a_may_go.set()
    ta.join(WAIT)
    tb.join(WAIT)
    assert log == ["a in", "a out", "b in"]


def test_an_engine_call_hands_the_baton_on_and_takes_it_back() -> None:
    """A's engine call lets B's CPU work run; A, back from the engine, waits until B lets go."""
    baton, log = Baton(), []
    in_engine, b_done_cpu, b_may_leave = threading.Event(), threading.Event(), threading.Event()
    a_engine_done = threading.Event()

    def a() -> None:
        with baton.held():
            with baton.engine():
                log.append("a engine")
                in_engine.set()
                assert b_done_cpu.wait(WAIT)  # B ran CPU work while A is inside the engine
                log.append("a engine done")
                a_engine_done.set()
            log.append("a cpu again")

    def b() -> None:
        assert in_engine.wait(WAIT)
        with baton.held():
            log.append("b cpu")
            b_done_cpu.set()
            assert b_may_leave.wait(WAIT)
            log.append("b out")

    ta, tb = _started(a), _started(b)
    assert a_engine_done.wait(WAIT)
    time.sleep(0.05)  # A's engine call has returned; A has had every chance to go on; it must wait
    assert log == ["a engine", "b cpu", "a engine done"]
    b_may_leave.set()
    ta.join(WAIT)
    tb.join(WAIT)
    assert log == ["a engine", "b cpu", "a engine done", "b out", "a cpu again"]
    assert not baton.holds()


def test_engine_calls_go_one_at_a_time() -> None:
    baton, inside, most = Baton(), [0], [0]
    lock = threading.Lock()

    def call() -> None:
        for _ in range(20):
            with baton.engine():
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.001)
                with lock:
                    inside[0] -= 1

    threads = [_started(call) for _ in range(3)]
    for thread in threads:
        thread.join(WAIT)
    assert most == [1]


def test_an_engine_call_outside_a_shard_thread_only_takes_the_engine() -> None:
    baton = Baton()
    with baton.engine():
        assert not baton.holds()
    with baton.held(), baton.engine():
        assert not baton.holds()  # let go of for the call


def test_cancel_stops_a_thread_at_its_next_step_and_reset_undoes_it() -> None:
    baton = Baton()
    baton.cancel()
    with pytest.raises(Cancelled), baton.held():
        pass
    assert not baton.holds()
    baton.reset()
    with baton.held():
        baton.cancel()
        with pytest.raises(Cancelled), baton.engine():  # the baton is not taken back once cancelled
            pass
        assert not baton.holds()
        with pytest.raises(Cancelled):
            baton.check()
    baton.reset()
    baton.check()


def test_run_threads_runs_every_item_and_returns_the_failures() -> None:
    baton, ran = Baton(), []

    def run(item: int) -> None:
        assert baton.holds()
        ran.append(item)
        if item % 3 == 0:
            raise ValueError(f"item {item}")

    failures = run_threads(list(range(7)), 2, run, baton, stop_on_error=False)
    assert sorted(ran) == list(range(7))
    assert sorted((item, str(err)) for item, err in failures) == [(0, "item 0"), (3, "item 3"), (6, "item 6")]
    assert not baton.holds()
    baton.check()  # reset after the run


def test_run_threads_stops_at_the_first_failure_when_asked() -> None:
    baton, ran = Baton(), []

    def run(item: int) -> None:
        ran.append(item)
        if item == 1:
            raise KeyError("boom")
        with baton.engine():  # an item still running stops when it takes the baton back
            pass

    failures = run_threads(list(range(50)), 2, run, baton, stop_on_error=True)
    assert [(item, type(err)) for item, err in failures] == [(1, KeyError)]
    assert len(ran) < 50
    baton.check()
    with pytest.raises(ValueError, match="threads must be >= 1"):
        run_threads([1], 0, run, baton, stop_on_error=True)


def test_a_second_interrupt_does_not_cut_short_the_wait_for_the_shard_threads() -> None:
    """Ctrl-C twice while one item is inside the engine and the other waits for it: run_threads raises
    KeyboardInterrupt only once both threads have stopped (the caller tears the worker down next)."""
    baton, inside, finished = Baton(), threading.Event(), []
    release = threading.Event()

    def run(item: int) -> None:
        with baton.engine():
            inside.set()
            release.wait(WAIT)
        finished.append(item)  # never reached after a cancel: taking the baton back raises Cancelled

    def cancelled() -> bool:
        try:
            baton.check()
        except Cancelled:
            return True
        return False

    def interrupt() -> None:
        # A real SIGINT to the main thread, as Ctrl-C gives: it wakes a blocked join (EINTR), which
        # _thread.interrupt_main() does not (it is seen only once the join returns).
        main = threading.main_thread().ident
        assert main is not None
        inside.wait(WAIT)
        signal.pthread_kill(main, signal.SIGINT)
        deadline = time.monotonic() + WAIT  # the first one is handled: the threads are being waited for
        while not cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)  # the second arrives during that wait
        time.sleep(0.1)
        release.set()

    _started(interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_threads([1, 2], 2, run, baton, stop_on_error=False)
    assert release.is_set()  # both interrupts arrived, and the threads were still waited for
    assert [t.name for t in threading.enumerate() if t.name.startswith("shard-thread-")] == []
    assert finished == []


# --- builds ---------------------------------------------------------------------------------------------


def _config(per_worker: int | None, workers: int = 0) -> Any:
    return small_config(
        runner={"workers": workers, "shard_size": 4, "cache": False, "shards_per_worker": per_worker}
    )


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return LocalRunner().run(_config(1), tmp_path_factory.mktemp("one") / "b")


def test_the_default_is_two_shards_only_with_an_engine_outside_this_process() -> None:
    assert _config(None).shards_per_worker == 1  # the simulated policy
    assert _config(3).shards_per_worker == 3
    server = small_config(policy={"kind": "openai", "base_url": "http://127.0.0.1:9", "model": "m"})
    assert server.shards_per_worker == 2
    assert small_config(policy={"kind": "vllm", "model": "m"}).shards_per_worker == 2
    in_process = small_config(policy={"kind": "transformers", "model": "m"})
    assert in_process.shards_per_worker == 1
    assert _config(2).hashed() == _config(1).hashed()  # placement, not content


@pytest.mark.parametrize(("per_worker", "workers"), [(2, 0), (3, 0), (2, 1), (2, 2)])
def test_shards_at_once_give_the_same_build(
    tmp_path: Path, one_at_a_time: BuildResult, per_worker: int, workers: int
) -> None:
    result = LocalRunner().run(_config(per_worker, workers), tmp_path / "b")
    assert result.content_hash == one_at_a_time.content_hash
    assert [(f.path, f.content_hash) for f in result.manifest.files] == [
        (f.path, f.content_hash) for f in one_at_a_time.manifest.files
    ]
    assert result.warnings == ()


def test_search_trees_stay_with_their_shard_when_two_shards_interleave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OmegaPRM's trees are a stage's side records: with two shards of one stage in flight (each engine
    call handing the baton on, here slowed so the shards surely interleave) each shard commits its own
    trees, and the build equals the one-at-a-time build, tree files included."""
    _Recorded(sleep=0.02).install(monkeypatch)
    annotate = [{"kind": "omegaprm", "k": 4, "search_limit": 4}]

    def build(per_worker: int, out: Path) -> BuildResult:
        runner = {"workers": 0, "shard_size": 4, "cache": False, "shards_per_worker": per_worker}
        return LocalRunner().run(small_config(annotate=annotate, runner=runner), out)

    one, two = build(1, tmp_path / "one"), build(2, tmp_path / "two")
    trees = [f for f in two.manifest.files if f.path.startswith("trees/")]
    assert len(trees) == 5
    assert two.content_hash == one.content_hash
    assert [(f.path, f.content_hash) for f in two.manifest.files] == [
        (f.path, f.content_hash) for f in one.manifest.files
    ]


class _Recorded:
    """Wraps SimulatedPolicy.generate: each call's thread and interval. Each call first sleeps 0.3 s,
    as an engine that releases the GIL while it computes: long beside a stage's CPU work (tens of ms
    here), so the other shard's stage ends inside the call even on a loaded machine."""

    def __init__(self, sleep: float = 0.3) -> None:
        self.calls: list[tuple[str, float, float]] = []
        self._generate = SimulatedPolicy.generate
        self._sleep = sleep

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        recorded = self

        def generate(
            policy: SimulatedPolicy, requests: Sequence[GenerationRequest]
        ) -> list[GenerationResult]:
            start = time.perf_counter()
            time.sleep(recorded._sleep)
            out = recorded._generate(policy, requests)
            recorded.calls.append((threading.current_thread().name, start, time.perf_counter()))
            return out

        monkeypatch.setattr(SimulatedPolicy, "generate", generate)


def test_one_shards_cpu_work_runs_while_anothers_engine_call_is_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_at_a_time: BuildResult
) -> None:
    engine = _Recorded()
    engine.install(monkeypatch)
    events: list[tuple[str, float, StageEvent]] = []
    runner = LocalRunner(
        on_event=lambda e: events.append((threading.current_thread().name, time.perf_counter(), e))
    )
    result = runner.run(_config(2), tmp_path / "b")
    assert result.content_hash == one_at_a_time.content_hash
    calls = sorted(engine.calls, key=lambda c: c[1])
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(calls))  # never two calls at once
    assert {name for name, _, _ in calls} == {"shard-thread-0", "shard-thread-1"}
    overlapped = [
        (name, event.stage)
        for name, at, event in events
        if any(other != name and start < at < end for other, start, end in calls)
    ]
    assert overlapped  # a stage committed on one thread while the other was inside the engine
    assert {e.shard for _, _, e in events} == {-1, *range(5)}  # -1: the global stages, in this thread
    for shard in range(5):  # each shard's stages still run in the graph's order
        stages = [e.stage for _, _, e in events if e.shard == shard]
        assert stages == ["load", "generate", "annotate-mc", "fuse", "assemble"]


def test_a_shard_that_fails_beside_another_in_one_worker_is_retried_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_at_a_time: BuildResult
) -> None:
    """Shard 2 raises once in a group of two: the other shard of its group commits uncharged, shard 2
    is retried and the build equals a clean one."""
    monkeypatch.setenv(FAULT_ENV, "2:raise:1")
    runner = LocalRunner()
    result = runner.run(_config(2, workers=1), tmp_path / "b")
    assert result.content_hash == one_at_a_time.content_hash
    assert result.warnings == ("shard 2: 1 attempt(s) failed on a worker; retried",)
    assert list(runner.causes) == [2]


def test_a_worker_killed_with_two_shards_in_flight_charges_neither_until_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_at_a_time: BuildResult
) -> None:
    monkeypatch.setenv(FAULT_ENV, "2:kill:1")
    runner = LocalRunner()
    result = runner.run(_config(2, workers=1), tmp_path / "b")
    assert result.content_hash == one_at_a_time.content_hash
    assert runner.poisoned == {}
    assert result.warnings == ("shard 2: 1 attempt(s) failed on a worker; retried",)


def test_a_failure_in_one_shard_thread_stops_the_build_in_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process the first failure is raised once the other shard thread has stopped; what was
    committed stays committed, and a rerun resumes it to the same build."""
    calls = [0]
    generate = SimulatedPolicy.generate

    def failing(policy: SimulatedPolicy, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("the engine went away")
        return generate(policy, requests)

    monkeypatch.setattr(SimulatedPolicy, "generate", failing)
    with pytest.raises(RuntimeError, match="the engine went away"):
        LocalRunner().run(_config(2), tmp_path / "b")
    assert not (tmp_path / "b" / "manifest.json").exists()
    monkeypatch.setattr(SimulatedPolicy, "generate", generate)
    resumed = LocalRunner().run(_config(2), tmp_path / "b")
    assert resumed.content_hash == LocalRunner().run(_config(1), tmp_path / "c").content_hash
