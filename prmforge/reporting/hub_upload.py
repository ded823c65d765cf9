"""Push a Hub export folder to a dataset repository: resumable, in bounded commits, retrying transient errors.

Each pass lists the repository (``list_repo_tree``) and compares every local file with what is there
(an LFS file by its sha256, a regular file by its git blob sha1), then commits only the files that
differ, data shards first and README.md last, in commits of at most ``max_files`` files and
``max_bytes`` bytes: a failure mid-way keeps the commits that landed. Shards under ``data/`` that the
export no longer has are deleted in the last commit. On HTTP 408, 429 or 5xx, or a dropped
connection, it waits (``Retry-After`` when the server sends it, else exponential backoff) and starts a
new pass: a commit whose reply was lost is then seen as landed and not sent again. Rerunning after a
failure resumes the same way. The token comes from ``HF_TOKEN`` and is never printed.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prmforge.pipelines.runners.builddir import file_sha256
from prmforge.schemas.errors import PrmforgeError

__all__ = ["HubPushError", "LocalFile", "PushPlan", "PushResult", "local_files", "plan_push", "push_folder"]

RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
MAX_FILES_PER_COMMIT: Final = 50  # as `datasets`' push_to_hub
MAX_BYTES_PER_COMMIT: Final = 512 * 1024 * 1024
MAX_WAIT_S: Final = 300.0


class HubPushError(PrmforgeError):
    """The push failed for a reason that waiting does not cure (or retries ran out)."""


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: str  # in the repository
    file: Path
    size: int
    sha256: str
    git_sha1: str


@dataclass(frozen=True, slots=True)
class RemoteFile:
    path: str
    blob_id: str
    lfs_sha256: str | None


@dataclass(frozen=True, slots=True)
class PushPlan:
    commits: tuple[tuple[LocalFile, ...], ...]
    deletes: tuple[str, ...]  # stale data/ files, removed in the last commit
    unchanged: tuple[str, ...]


@dataclass(slots=True)
class PushResult:
    repo_id: str
    commits: int = 0
    sent: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    retries: int = 0


def _git_sha1(path: Path, size: int) -> str:
    digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(folder: Path) -> list[LocalFile]:
    """The export's files: data shards in name order, README.md last (the card names the shards)."""
    paths = sorted(p for p in (folder / "data").rglob("*") if p.is_file())
    if not (folder / "README.md").is_file() or not paths:
        raise HubPushError(f"{folder}: not a Hub export (no README.md or no data/ files)")
    out = []
    for p in [*paths, folder / "README.md"]:
        size = p.stat().st_size
        out.append(LocalFile(p.relative_to(folder).as_posix(), p, size, file_sha256(p), _git_sha1(p, size)))
    return out


def _same(local: LocalFile, remote: RemoteFile) -> bool:
    return remote.lfs_sha256 == local.sha256 if remote.lfs_sha256 else remote.blob_id == local.git_sha1


def plan_push(
    local: list[LocalFile], remote: dict[str, RemoteFile], max_files: int, max_bytes: int
) -> PushPlan:
    """The commits that make the repository hold ``local`` (files already there are not sent)."""
    changed = [f for f in local if f.path not in remote or not _same(f, remote[f.path])]
    names = {f.path for f in local}
    deletes = tuple(sorted(p for p in remote if p.startswith("data/") and p not in names))
    commits: list[tuple[LocalFile, ...]] = []
    batch: list[LocalFile] = []
    for f in changed:
        if batch and (len(batch) >= max_files or sum(b.size for b in batch) + f.size > max_bytes):
            commits.append(tuple(batch))
            batch = []
        batch.append(f)
    if batch or deletes:
        commits.append(tuple(batch))
    unchanged = tuple(f.path for f in local if f not in changed)
    return PushPlan(tuple(commits), deletes, unchanged)


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _transport_errors() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            kinds.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(kinds)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def transient_wait(err: BaseException, attempt: int, base: float = 1.0) -> float | None:
    """Seconds to wait before retrying after ``err`` (None: not transient): ``Retry-After`` when the
    server sent one, else ``base * 2**(attempt - 1)``, at most five minutes."""
    from huggingface_hub.errors import HfHubHTTPError

    backoff: float = min(MAX_WAIT_S, base * 2.0 ** (attempt - 1))
    transport = _transport_errors()
    for e in _chain(err):
        if isinstance(e, HfHubHTTPError) and e.response is not None:
            if e.response.status_code not in RETRY_STATUS:
                return None
            after = _retry_after(e.response.headers)
            return backoff if after is None else min(MAX_WAIT_S, after)
        if transport and isinstance(e, transport):
            return backoff
    return None


def _remote(api: Any, repo_id: str) -> dict[str, RemoteFile]:
    from huggingface_hub.hf_api import RepoFile

    out = {}
    for entry in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True):
        if isinstance(entry, RepoFile):
            out[entry.path] = RemoteFile(entry.path, entry.blob_id, entry.lfs.sha256 if entry.lfs else None)
    return out


def _commit(
    api: Any, repo_id: str, files: tuple[LocalFile, ...], deletes: tuple[str, ...], title: str
) -> None:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    operations: list[Any] = [CommitOperationAdd(f.path, str(f.file)) for f in files]
    operations += [CommitOperationDelete(path) for path in deletes]
    api.create_commit(repo_id, operations, commit_message=title, repo_type="dataset")


def push_folder(
    folder: Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    max_files: int = MAX_FILES_PER_COMMIT,
    max_bytes: int = MAX_BYTES_PER_COMMIT,
    max_retries: int = 8,
    base_wait: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda _: None,
) -> PushResult:
    """Create the dataset repository if needed and make it hold the files of ``folder`` (see module doc).

    ``max_retries`` bounds consecutive failed attempts; a commit that lands resets the count.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = token or os.environ.get("HF_TOKEN") or None
    if not token:
        raise HubPushError("--push needs a Hugging Face token with write access in HF_TOKEN")
    local = local_files(folder)
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    retryable: tuple[type[BaseException], ...] = (HfHubHTTPError, RuntimeError, *_transport_errors())
    result, created, failures, planned, verifying = PushResult(repo_id), False, 0, False, False
    while True:
        try:
            if not created:
                api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
                created = True
            plan = plan_push(local, _remote(api, repo_id), max_files, max_bytes)
            if not planned:  # what was already there when this push began
                result.unchanged, planned = list(plan.unchanged), True
            if verifying and plan.commits:
                missing = ", ".join(f.path for c in plan.commits for f in c) or ", ".join(plan.deletes)
                raise HubPushError(f"the repository does not show what was just committed: {missing}")
            for k, files in enumerate(plan.commits, 1):
                deletes = plan.deletes if k == len(plan.commits) else ()
                log(f"commit {k} of {len(plan.commits)}: {len(files)} file(s), {len(deletes)} deletion(s)")
                _commit(api, repo_id, files, deletes, f"prmforge export (part {k} of {len(plan.commits)})")
                result.commits += 1
                result.sent += [f.path for f in files]
                result.deleted += list(deletes)
                failures = 0
            if plan.commits:
                verifying = True  # one more pass, which must find nothing left to send
                continue
            return result
        except retryable as err:
            if not _from_hub(err):
                raise
            failures += 1
            wait = transient_wait(err, failures, base_wait)
            if wait is None:
                raise HubPushError(f"the Hub refused the push: {_describe(err)}") from None
            if failures > max_retries:
                raise HubPushError(
                    f"gave up after {max_retries} retries: {_describe(err)}; rerun to resume (files that "
                    "landed are kept and not sent again)"
                ) from None
            result.retries += 1
            verifying = False
            log(f"transient error ({_describe(err)}); retrying in {wait:g}s")
            sleep(wait)
        except ValueError as err:  # the client's own checks: a README the Hub rejects, a malformed reply
            raise HubPushError(f"the push failed: {err}") from None


def _from_hub(err: BaseException) -> bool:
    """Whether ``err`` is (or wraps) an HTTP error of the Hub or a network error."""
    from huggingface_hub.errors import HfHubHTTPError

    kinds: tuple[type[BaseException], ...] = (HfHubHTTPError, *_transport_errors())
    return any(isinstance(e, kinds) for e in _chain(err))


def _describe(err: BaseException) -> str:
    """What failed, without headers (so never the token): status, method, path and the server's message."""
    from huggingface_hub.errors import HfHubHTTPError

    for e in _chain(err):
        if isinstance(e, HfHubHTTPError) and e.response is not None:
            try:
                where = f" from {e.response.request.method} {e.response.url.path}"
            except RuntimeError:  # a response built without its request
                where = ""
            message = f": {e.server_message}" if e.server_message else ""
            return f"HTTP {e.response.status_code}{where}{message}"
    return f"{type(err).__name__}: {str(err)[:200]}"
