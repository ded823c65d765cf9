"""A loopback stand-in for the Hugging Face Hub: exactly the endpoints ``huggingface_hub`` 2.x calls for
``create_repo``, ``list_repo_tree`` and ``create_commit`` over the LFS (non-Xet) path, with faults.

Endpoints (``{repo}`` is ``ORG/NAME``; only the ``main`` revision; only dataset repositories)::

    POST /api/repos/create                              create (409 when it exists, as the Hub)
    GET  /api/datasets/{repo}/tree/main?recursive=...   files (and folders) with git oid and LFS info
    POST /api/validate-yaml                             README.md front matter must parse as YAML
    POST /api/datasets/{repo}/preupload/main            upload mode per file: *.parquet -> lfs, else regular
    POST /datasets/{repo}.git/info/lfs/objects/batch    basic transfer; no actions for a stored object
    PUT  /lfs/{oid}                                     the object's bytes (sha256 checked; no auth, like a
                                                        presigned URL)
    POST /lfs/{oid}/verify                              200 when the object is stored
    POST /api/datasets/{repo}/commit/main               ndjson: header, file (base64), lfsFile, deletedFile

Every request but the presigned PUT needs ``Authorization: Bearer <token>`` (else 401). Not covered: the
real Hub's OAuth/fine-grained token scopes, Xet storage (the client must run with
``HF_HUB_DISABLE_XET``), LFS multipart uploads, pagination, revisions other than ``main``, pull
requests, ``.gitattributes`` rules, rate-limit headers other than ``Retry-After``, and concurrent commits.

A :class:`Fault` answers matching requests with a status (and ``Retry-After``), or drops the connection
before reading the body to its end (``drop-mid``), after reading it but before applying it
(``drop-before``) or after applying it without replying (``drop-after``: the lost-reply case), or
replies success without applying it (``pretend``: a Hub that loses a commit).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

REPO = r"(?P<repo>[^/]+/[^/]+)"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


@dataclass
class Fault:
    """Answer the ``times`` requests matching ``method`` and ``path`` (a regex) after the first ``skip``."""

    method: str
    path: str
    action: str  # "status", "drop-mid", "drop-before", "drop-after" or "pretend"
    status: int = 503
    retry_after: str | None = None
    skip: int = 0
    times: int = 1
    seen: int = 0

    def fires(self, method: str, path: str) -> bool:
        if method != self.method or not re.fullmatch(self.path, path):
            return False
        self.seen += 1
        return self.skip < self.seen <= self.skip + self.times


@dataclass
class Repo:
    files: dict[str, bytes] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)  # paths stored as LFS files
    commits: int = 0
    private: bool = False


@dataclass
class Event:
    kind: str  # "put" (LFS bytes received), "add" (a commit adds a path), "delete", "commit"
    path: str
    sha256: str


class HubState:
    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.objects: dict[str, bytes] = {}  # LFS store by sha256
        self.events: list[Event] = []
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            return next((f for f in self.faults if f.fires(method, path)), None)

    def resent_after_landing(self) -> list[str]:
        """Paths whose content was received again (as LFS bytes or a commit line) after it had landed."""
        landed: dict[str, str] = {}
        resent = []
        for e in self.events:
            if e.kind == "add":
                if landed.get(e.path) == e.sha256:
                    resent.append(e.path)
                landed[e.path] = e.sha256
            elif e.kind == "put" and e.sha256 in landed.values():
                resent.append(f"lfs:{e.sha256}")
            elif e.kind == "delete":
                landed.pop(e.path, None)
        return resent


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- plumbing -----------------------------------------------------------------------------------
    def _body(self, limit: int | None = None) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length if limit is None else min(limit, length))

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True

    def _handle(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        path = url.path
        state.requests.append((method, path))
        fault = state.fault(method, path)
        if fault is not None and fault.action == "drop-mid":
            self._body(limit=int(self.headers.get("Content-Length", "0")) // 2)
            return self._drop()
        body = self._body()
        if fault is not None and fault.action == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return self._reply(fault.status, {"error": f"injected {fault.status}"}, extra)
        if fault is not None and fault.action == "drop-before":
            return self._drop()
        if fault is not None and fault.action == "pretend":  # a success reply for a commit never applied
            name = path.split("/")[3] + "/" + path.split("/")[4]  # /api/datasets/ORG/NAME/commit/main
            url = f"{self._url(name)}/commit/{'0' * 40}"
            return self._reply(200, {"commitUrl": url, "commitOid": "0" * 40, "pullRequestUrl": None})
        presigned = method == "PUT" and path.startswith("/lfs/")
        if not presigned and self.headers.get("Authorization") != f"Bearer {state.token}":
            return self._reply(401, {"error": "Invalid credentials in Authorization header"})
        status, payload = self._route(method, path, parse_qs(url.query), body)
        if fault is not None and fault.action == "drop-after":
            return self._drop()
        return self._reply(status, payload)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    # --- the Hub ------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        state = self.server.state
        with state.lock:
            if method == "POST" and path == "/api/repos/create":
                return self._create(json.loads(body))
            if method == "POST" and path == "/api/validate-yaml":
                return self._validate(json.loads(body)["content"])
            if method == "PUT" and (m := re.fullmatch(r"/lfs/(?P<oid>[0-9a-f]{64})", path)):
                return self._put(m["oid"], body)
            if method == "POST" and (m := re.fullmatch(r"/lfs/(?P<oid>[0-9a-f]{64})/verify", path)):
                return (200, {}) if m["oid"] in state.objects else (404, {"error": "object not stored"})
            if method == "POST" and (
                m := re.fullmatch(rf"/datasets/{REPO}\.git/info/lfs/objects/batch", path)
            ):
                return self._batch(m["repo"], json.loads(body))
            m = re.fullmatch(rf"/api/datasets/{REPO}/(?P<op>tree|preupload|commit)/main", path)
            if m is None or m["repo"] not in state.repos:
                return 404, {"error": f"no such endpoint or repository: {method} {path}"}
            repo = state.repos[m["repo"]]
            if method == "GET" and m["op"] == "tree":
                return 200, self._tree(repo, query.get("recursive", ["false"])[0].lower() == "true")
            if method == "POST" and m["op"] == "preupload":
                return 200, self._preupload(repo, json.loads(body))
            if method == "POST" and m["op"] == "commit":
                return self._commit(m["repo"], repo, body)
            return 404, {"error": f"no such endpoint: {method} {path}"}

    def _create(self, payload: dict[str, Any]) -> tuple[int, Any]:
        if payload.get("type") != "dataset":
            return 400, {"error": "this server keeps dataset repositories only"}
        name = f"{payload['organization']}/{payload['name']}"
        if name in self.server.state.repos:
            return 409, {"error": "You already created this dataset repo", "url": self._url(name)}
        self.server.state.repos[name] = Repo(private=payload.get("visibility") == "private")
        return 200, {"url": self._url(name), "name": name}

    def _url(self, name: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/datasets/{name}"

    def _validate(self, content: str) -> tuple[int, Any]:
        if content.startswith("---\n"):
            try:
                yaml.safe_load(content[4 : content.index("\n---\n", 4)])
            except (ValueError, yaml.YAMLError) as err:
                return 400, {"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def _tree(self, repo: Repo, recursive: bool) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        folders = sorted({p.rsplit("/", 1)[0] for p in repo.files if "/" in p})
        for folder in folders:
            entries.append(
                {"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest()}
            )
        for path, data in sorted(repo.files.items()):
            if not recursive and "/" in path:
                continue
            entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data)}
            if path in repo.lfs:
                pointer = lfs_pointer(data)
                entry["oid"] = git_oid(pointer)
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": len(pointer),
                }
            else:
                entry["oid"] = git_oid(data)
            entries.append(entry)
        return entries

    def _preupload(self, repo: Repo, payload: dict[str, Any]) -> dict[str, Any]:
        files = []
        for f in payload["files"]:
            lfs = f["path"].endswith(".parquet") or f["size"] > 10_000_000
            data = repo.files.get(f["path"])
            oid = None if data is None else (hashlib.sha256(data).hexdigest() if lfs else git_oid(data))
            mode = "lfs" if lfs else "regular"
            files.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return {"files": files}

    def _batch(self, name: str, payload: dict[str, Any]) -> tuple[int, Any]:
        if name not in self.server.state.repos:
            return 404, {"message": "repository not found"}
        host, port = self.server.server_address[:2]
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.server.state.objects:
                href = f"http://{host}:{port}/lfs/{obj['oid']}"
                entry["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def _put(self, oid: str, body: bytes) -> tuple[int, Any]:
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "sha256 mismatch"}
        self.server.state.objects[oid] = body
        self.server.state.events.append(Event("put", "", oid))
        return 200, {}

    def _commit(self, name: str, repo: Repo, body: bytes) -> tuple[int, Any]:
        state = self.server.state
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            return 400, {"error": "the first line must be the header"}
        changes: list[tuple[str, str, bytes | None, bool]] = []
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                changes.append(("add", value["path"], base64.b64decode(value["content"]), False))
            elif line["key"] == "lfsFile":
                if value["oid"] not in state.objects:
                    return 422, {"error": f"LFS object {value['oid']} was never uploaded"}
                changes.append(("add", value["path"], state.objects[value["oid"]], True))
            elif line["key"] == "deletedFile":
                if value["path"] not in repo.files:
                    return 404, {"error": "A file with this name doesn't exist"}
                changes.append(("delete", value["path"], None, False))
            else:
                return 400, {"error": f"unsupported commit line {line['key']!r}"}
        for kind, path, data, lfs in changes:  # applied only once every line is valid: atomic
            if kind == "delete":
                repo.files.pop(path)
                repo.lfs.discard(path)
                state.events.append(Event("delete", path, ""))
                continue
            assert data is not None
            repo.files[path] = data
            (repo.lfs.add if lfs else repo.lfs.discard)(path)
            state.events.append(Event("add", path, hashlib.sha256(data).hexdigest()))
        repo.commits += 1
        oid = hashlib.sha1(f"{name}:{repo.commits}".encode()).hexdigest()
        state.events.append(Event("commit", lines[0]["value"]["summary"], oid))
        return 200, {"commitUrl": f"{self._url(name)}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextmanager
def running_hub(token: str) -> Iterator[tuple[str, HubState]]:
    """A hub on 127.0.0.1 at a free port, for the ``with`` block: ``(endpoint, state)``."""
    state = HubState(token)
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
