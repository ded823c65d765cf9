"""Suite-wide rules.

Tests of the isolation layers (the sandbox, the compile-test verifier, the language-server jail) skip
themselves where a tool is missing on a developer's machine. Under CI (``CI`` set to ``true`` or ``1``)
such a skip is a failure: CI installs every tool, so a skip there means a layer silently went missing
and a broken sandbox would otherwise pass green.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_rules import in_ci, required_in_ci


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and required_in_ci(Path(str(item.fspath))):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every isolation tool must be installed: {reason}"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread_per_test_process() -> Iterator[None]:
    """pytest-xdist runs a test process per core: torch's default of one thread per core in each (and in
    the servers they start) oversubscribes the machine many times over."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`prmforge tiny-model`'s output (a random ~300k-parameter Llama and a local tokenizer), once per
    test process."""
    from prmforge.policies.tiny_model import write_tiny_model

    out = tmp_path_factory.mktemp("tiny-model")
    write_tiny_model(out)
    return out


@pytest.fixture(scope="session", autouse=True)
def _build_registry_outside_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every `prmforge build` records itself in the build registry ($XDG_DATA_HOME/prmforge/registry.sqlite
    unless $PRMFORGE_DB is set): keep it, and the scheduler's logs, in a temporary folder (subprocesses
    inherit it), never in ~/.local/share."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
        patch.delenv("PRMFORGE_DB", raising=False)
        yield
