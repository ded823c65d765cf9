"""The JSON-lines child process under a wall-clock limit shared by the math-verify and sympy engines."""

from __future__ import annotations

from pathlib import Path

from prmforge.verifiers.child_worker import JsonLineWorker

SCRIPT = """
import json, sys, time
print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req.get("sleep"):
        time.sleep(req["sleep"])
    if req.get("garbage"):
        print("not json", flush=True)
        continue
    if req.get("die"):
        sys.exit(3)
    print(json.dumps({"echo": req["x"]}), flush=True)
"""


def test_answers_timeouts_protocol_breaks_and_restarts(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(SCRIPT)
    worker = JsonLineWorker(script, startup_timeout_s=30)
    try:
        assert worker.request({"x": 1}, 10) == {"echo": 1}
        assert (worker.calls, worker.restarts) == (1, 0)
        assert worker.request({"x": 2, "sleep": 5}, 0.5) is None  # past the limit: killed
        assert worker.restarts == 1
        assert not worker.alive
        assert worker.request('{"x": 3}', 10) == {"echo": 3}  # a fresh child; a pre-encoded line
        assert worker.request({"x": 4, "garbage": True}, 10) is None  # not JSON: killed
        assert worker.request({"x": 5, "die": True}, 10) is None  # the child died: no answer
        assert worker.restarts == 3
        assert worker.request({"x": 6}, 10) == {"echo": 6}
        assert worker.calls == 6
    finally:
        worker.close()
    assert not worker.alive


def test_a_child_that_cannot_start_answers_nothing(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("import sys\nsys.exit(1)\n")
    worker = JsonLineWorker(script, startup_timeout_s=30)
    assert worker.request({"x": 1}, 5) is None
    assert not worker.alive
