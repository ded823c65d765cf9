"""``prmforge export --push`` against a loopback Hub (``hub_server.py``): retries, resume, no file sent twice.

``hf_xet`` is installed in this environment, so the client is switched to the LFS path
(``HF_HUB_DISABLE_XET``), which is what the loopback Hub speaks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import Fault, HubState, running_hub
from reporting_builds import cli, two_sources
from typer.testing import CliRunner

from prmforge.reporting.hub_card import export_hub_folder
from prmforge.reporting.hub_upload import HubPushError, PushResult, local_files, push_folder

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=<...>. to upload raw bytes:DeprecationWarning")

TOKEN = "hf_test_token_never_printed_0123456789"
REPO = "org/two"
COMMIT = r"/api/datasets/org/two/commit/main"
CREATE = r"/api/repos/create"
FILES = [
    "data/train-00000-of-00002.parquet",
    "data/train-00001-of-00002.parquet",
    "data/validation-00000-of-00002.parquet",
    "data/validation-00001-of-00002.parquet",
    "README.md",
]


@pytest.fixture(autouse=True)
def _no_xet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_sources(tmp_path_factory)


@pytest.fixture
def folder(build: Path, tmp_path: Path) -> Path:
    export_hub_folder(build, REPO, tmp_path / "hub")
    return tmp_path / "hub"


@pytest.fixture
def hub() -> Iterator[tuple[str, HubState]]:
    with running_hub(TOKEN) as served:
        yield served


def _push(folder: Path, endpoint: str, sleeps: list[float], **kwargs: object) -> PushResult:
    return push_folder(
        folder,
        REPO,
        token=TOKEN,
        endpoint=endpoint,
        max_files=1,
        base_wait=0.5,
        sleep=sleeps.append,
        **kwargs,
    )  # type: ignore[arg-type]


def _holds_exactly(state: HubState, folder: Path) -> None:
    assert state.repos[REPO].files == {f.path: f.file.read_bytes() for f in local_files(folder)}


def _adds(state: HubState) -> list[str]:
    return [e.path for e in state.events if e.kind == "add"]


def test_a_push_lands_every_file_once_in_bounded_commits(folder: Path, hub: tuple[str, HubState]) -> None:
    endpoint, state = hub
    sleeps: list[float] = []
    result = _push(folder, endpoint, sleeps)
    _holds_exactly(state, folder)
    assert (result.sent, result.unchanged, result.commits, result.retries) == (FILES, [], 5, 0)
    assert _adds(state) == FILES  # one commit per file (max_files=1), README.md last
    assert state.repos[REPO].lfs == set(FILES[:4])  # shards through LFS, the card as a regular file
    assert state.resent_after_landing() == []
    again = _push(folder, endpoint, sleeps)
    assert (again.sent, again.unchanged, again.commits) == ([], FILES, 0)
    assert _adds(state) == FILES
    assert sleeps == []


def test_429_and_503_are_retried_honouring_retry_after(folder: Path, hub: tuple[str, HubState]) -> None:
    endpoint, state = hub
    state.faults += [
        Fault("POST", CREATE, "status", status=429, retry_after="7"),
        Fault("POST", COMMIT, "status", status=503, skip=1),
        Fault("POST", COMMIT, "status", status=429, retry_after="3", skip=3),
    ]
    sleeps: list[float] = []
    result = _push(folder, endpoint, sleeps)
    assert sleeps == [7.0, 0.5, 3.0]  # Retry-After when sent, else the backoff's first step
    assert result.retries == 3
    _holds_exactly(state, folder)
    assert sorted(_adds(state)) == sorted(FILES)
    assert state.resent_after_landing() == []


def test_a_commit_whose_reply_is_lost_is_not_sent_again(folder: Path, hub: tuple[str, HubState]) -> None:
    endpoint, state = hub
    state.faults.append(Fault("POST", COMMIT, "drop-after", skip=1))  # commit 2 lands, its reply is lost
    sleeps: list[float] = []
    result = _push(folder, endpoint, sleeps)
    assert sleeps == [0.5]
    assert FILES[1] not in result.sent  # the client never saw it land, the next pass found it there
    _holds_exactly(state, folder)
    assert _adds(state) == FILES
    assert state.resent_after_landing() == []


def test_a_connection_dropped_mid_upload_resumes(folder: Path, hub: tuple[str, HubState]) -> None:
    endpoint, state = hub
    state.faults += [
        Fault("POST", COMMIT, "drop-mid", skip=2),  # commit 3 never arrives whole: nothing lands
        Fault("PUT", r"/lfs/[0-9a-f]{64}", "drop-mid", skip=3),  # the 4th shard's bytes cut off
    ]
    sleeps: list[float] = []
    result = _push(folder, endpoint, sleeps)
    assert sleeps == [0.5]  # the cut LFS upload is retried inside huggingface_hub (its own backoff)
    assert result.sent == FILES
    _holds_exactly(state, folder)
    assert _adds(state) == FILES
    assert state.resent_after_landing() == []
    puts = [e.sha256 for e in state.events if e.kind == "put"]
    assert len(puts) == len(set(puts)) == 4  # commit 3's shard was stored once, before the drop


def test_a_failed_push_resumes_on_rerun_without_resending(folder: Path, hub: tuple[str, HubState]) -> None:
    endpoint, state = hub
    state.faults.append(Fault("POST", COMMIT, "status", status=503, skip=2, times=3))
    sleeps: list[float] = []
    with pytest.raises(HubPushError) as err:
        _push(folder, endpoint, sleeps, max_retries=2)
    assert str(err.value) == (
        "gave up after 2 retries: HTTP 503 from POST /api/datasets/org/two/commit/main: injected 503; rerun "
        "to resume (files that landed are kept and not sent again)"
    )
    assert sleeps == [0.5, 1.0]
    assert _adds(state) == FILES[:2]
    result = _push(folder, endpoint, sleeps)
    assert (result.unchanged, result.sent) == (FILES[:2], FILES[2:])
    _holds_exactly(state, folder)
    assert _adds(state) == FILES
    assert state.resent_after_landing() == []


def test_stale_shards_are_deleted_and_other_files_kept(folder: Path, hub: tuple[str, HubState]) -> None:
    endpoint, state = hub
    sleeps: list[float] = []
    _push(folder, endpoint, sleeps)
    repo = state.repos[REPO]
    repo.files["data/train-00000-of-00009.parquet"] = b"an older export"
    repo.lfs.add("data/train-00000-of-00009.parquet")
    repo.files["notes.txt"] = b"the owner's"
    repo.files["README.md"] = b"an older card"
    result = _push(folder, endpoint, sleeps)
    assert (result.sent, result.deleted) == (["README.md"], ["data/train-00000-of-00009.parquet"])
    assert repo.files.pop("notes.txt") == b"the owner's"
    _holds_exactly(state, folder)


def test_a_refused_token_is_a_clear_error_that_never_shows_it(
    folder: Path, hub: tuple[str, HubState]
) -> None:
    endpoint, state = hub
    state.token = "another"
    with pytest.raises(HubPushError) as err:
        _push(folder, endpoint, [])
    assert str(err.value).startswith("the Hub refused the push: HTTP 401")
    assert TOKEN not in str(err.value)
    with pytest.raises(HubPushError, match="needs a Hugging Face token with write access in HF_TOKEN"):
        push_folder(folder, REPO, endpoint=endpoint)


def test_the_push_command(
    build: Path, tmp_path: Path, hub: tuple[str, HubState], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, state = hub
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    root = tmp_path / "pushed"
    args = ["export", str(build), "--repo-id", REPO, "--output", str(root), "--push", "--private"]
    run = CliRunner().invoke(cli(), args)
    assert run.exit_code == 0, run.output
    assert TOKEN not in run.output
    assert " ".join(run.output.split()).endswith(
        f"pushed {root} to dataset {REPO}: 5 file(s) sent in 1 commit(s), 0 already there, 0 stale deleted, "
        "0 retried error(s)"
    )
    assert state.repos[REPO].private
    _holds_exactly(state, root)


@pytest.mark.slow
def test_the_installed_command_pushes_with_xet_disabled_by_environment(build: Path, tmp_path: Path) -> None:
    """The real entry point in a fresh process: ``HF_ENDPOINT``, ``HF_HUB_DISABLE_XET`` and ``HF_TOKEN`` from
    the environment, as a user sets them."""
    with running_hub(TOKEN) as (endpoint, state):
        env = {
            **os.environ,
            "HF_ENDPOINT": endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_TOKEN": TOKEN,
            "HF_HOME": str(tmp_path / "hf-home"),
        }
        code = "from prmforge.pipelines.cli_export import export_app; export_app()"
        args = ["--repo-id", REPO, "--output", str(tmp_path / "pushed"), "--push"]
        run = subprocess.run(
            [sys.executable, "-c", code, str(build), *args],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert TOKEN not in run.stdout + run.stderr
        _holds_exactly(state, tmp_path / "pushed")
        assert state.resent_after_landing() == []


def test_a_commit_the_repository_does_not_show_is_an_error(folder: Path, hub: tuple[str, HubState]) -> None:
    endpoint, state = hub
    state.faults.append(Fault("POST", COMMIT, "pretend"))
    with pytest.raises(HubPushError) as err:
        _push(folder, endpoint, [])
    assert str(err.value) == f"the repository does not show what was just committed: {FILES[0]}"
    assert _adds(state) == FILES[1:]
