"""The LSP client: framing (pure) and a real pyright server (clean, diagnostics, hang, crash, size cap)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from prmforge.verifiers.lsp import (
    FrameDecoder,
    FrameError,
    LanguageServer,
    ServerNotFoundError,
    ServerSpec,
    encode_message,
    jail_command,
    pyright_spec,
)
from prmforge.verifiers.lsp.servers import _others_can_read


def _pyright() -> ServerSpec | None:
    try:
        return pyright_spec()
    except ServerNotFoundError:
        return None


PYRIGHT = _pyright()
requires_pyright = pytest.mark.skipif(PYRIGHT is None, reason="pyright wheel or node not installed")


# ---- framing -------------------------------------------------------------------------------------


def test_encode_then_decode_in_arbitrary_chunks() -> None:
    """Messages split at every byte boundary come back whole and in order."""
    data = encode_message({"id": 1, "result": "é"}) + encode_message({"method": "x", "params": [1, 2]})
    assert data.startswith(b"Content-Length: 22\r\n\r\n")
    decoder = FrameDecoder()
    out = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == [{"id": 1, "result": "é"}, {"method": "x", "params": [1, 2]}]


def test_decoder_accepts_extra_headers() -> None:
    """A Content-Type header next to Content-Length is ignored."""
    body = b'{"id":2}'
    frame = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: 8\r\n\r\n" + body
    assert FrameDecoder().feed(frame) == [{"id": 2}]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"Content-Length: 100\r\n\r\n", "exceeds the cap"),
        (b"X-Other: 1\r\n\r\n{}", "no Content-Length"),
        (b"Content-Length: abc\r\n\r\n", "bad Content-Length"),
        (b"Content-Length: 2\r\n\r\n[]", "not an object"),
        (b"Content-Length: 2\r\n\r\n{x", "not UTF-8 JSON"),
        (b"x" * 5000, "header longer"),
    ],
)
def test_decoder_rejects_bad_frames(frame: bytes, message: str) -> None:
    """Malformed or oversized frames raise FrameError naming the problem."""
    with pytest.raises(FrameError, match=message):
        FrameDecoder(max_body_bytes=50).feed(frame)


def test_jail_command_without_and_with_bwrap(tmp_path: Path) -> None:
    """The jail clears the environment and, with bwrap, unshares every namespace (network included)."""
    spec = ServerSpec("fake", "0", ("/usr/bin/true",), "python", ".py")
    bare = jail_command(spec, host_workspace=str(tmp_path), use_bwrap=False)
    assert bare.isolation == "none"
    assert bare.workspace == str(tmp_path)
    assert set(bare.env) == {"PATH", "HOME", "LANG"}
    assert bare.argv[-1] == "/usr/bin/true"
    if shutil.which("bwrap"):
        jailed = jail_command(spec, host_workspace=str(tmp_path))
        assert jailed.isolation == "bwrap"
        assert jailed.workspace == "/workspace"
        assert {"--unshare-all", "--die-with-parent", "--clearenv"} <= set(jailed.argv)


# ---- a real server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[LanguageServer]:
    assert PYRIGHT is not None
    with LanguageServer(PYRIGHT) as ls:
        yield ls


@requires_pyright
def test_clean_file_is_clean(server: LanguageServer) -> None:
    """A correct file gets status "clean" with no diagnostics."""
    result = server.diagnose("def add(a, b):\n    return a + b\n\n\nassert add(1, 2) == 3\n")
    assert result.status == "clean"
    assert result.diagnostics == ()
    assert result.available


@requires_pyright
def test_undefined_name_is_reported_on_its_line(server: LanguageServer) -> None:
    """An undefined name gives one error on its (0-based) line and column."""
    result = server.diagnose("def f(x):\n    y = x + 1\n    return z\n")
    assert result.status == "diagnostics"
    assert [(d.line, d.character, d.severity, d.code) for d in result.diagnostics] == [
        (2, 11, 1, "reportUndefinedVariable")
    ]
    assert '"z" is not defined' in result.diagnostics[0].message


@requires_pyright
def test_syntax_error_is_a_diagnostic(server: LanguageServer) -> None:
    """A block without a body is reported on the line after the colon."""
    result = server.diagnose("def f(x):\n")
    assert result.status == "diagnostics"
    assert {d.severity for d in result.diagnostics} == {1}


@requires_pyright
def test_oversized_document_is_unavailable_and_never_sent(server: LanguageServer) -> None:
    """A 10 MB one-line file is refused by the size cap: "unavailable", and no byte goes to the server."""
    server.diagnose("x = 1\n")  # make sure the server is up, so a send would show in bytes_sent
    sent, starts = server.bytes_sent, server.starts
    result = server.diagnose("x = '" + "a" * 10_000_000 + "'\n")
    assert result.status == "unavailable"
    assert "exceeds the cap" in result.reason
    assert server.bytes_sent == sent
    assert server.starts == starts
    assert server.diagnose("x = 1\n").status == "clean"


@requires_pyright
def test_long_line_cap() -> None:
    """A line over max_line_chars is refused even when the document is small."""
    assert PYRIGHT is not None
    ls = LanguageServer(PYRIGHT, max_line_chars=50)
    result = ls.diagnose("x = '" + "a" * 60 + "'\n")
    assert result.status == "unavailable"
    assert "characters exceeds the cap of 50" in result.reason
    assert ls.connection is None  # nothing was started for it


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


@pytest.mark.slow
@requires_pyright
def test_hung_server_is_unavailable_then_restarted() -> None:
    """A stopped (hung) server times out -> "unavailable"; the next call starts a new one that works."""
    assert PYRIGHT is not None
    # Generous timeouts for the calls that must succeed (a loaded machine starts pyright slowly);
    # the short one only for the hung server.
    with LanguageServer(PYRIGHT, diagnostics_timeout_s=30.0) as ls:
        assert ls.diagnose("a = 1\n").status == "clean"
        conn = ls.connection
        assert conn is not None
        for pid in _descendants(conn.pid):
            os.kill(pid, signal.SIGSTOP)
        ls.diagnostics_timeout_s = 1.5
        hung = ls.diagnose("b = 2\n")
        assert hung.status == "unavailable"
        assert hung.reason.startswith("timeout")
        assert not conn.alive
        ls.diagnostics_timeout_s = 30.0
        again = ls.diagnose("c = undefined_name\n")
        assert again.status == "diagnostics"
        assert ls.restarts == 1
        assert ls.connection is not conn


@pytest.mark.slow
@requires_pyright
def test_server_killed_mid_request_is_unavailable_then_restarted() -> None:
    """A server that dies while a document waits -> "unavailable" (crash); the next call works."""
    assert PYRIGHT is not None
    with LanguageServer(PYRIGHT, diagnostics_timeout_s=20.0) as ls:
        assert ls.diagnose("a = 1\n").status == "clean"
        conn = ls.connection
        assert conn is not None
        for pid in _descendants(conn.pid):
            os.kill(pid, signal.SIGSTOP)
        killer = threading.Timer(0.5, os.killpg, (conn.pid, signal.SIGKILL))
        killer.start()
        crashed = ls.diagnose("b = 2\n")
        killer.join()
        assert crashed.status == "unavailable"
        assert crashed.reason.startswith("server crashed")
        assert crashed.seconds < 10
        assert ls.diagnose("c = 3\n").status == "clean"
        assert ls.restarts == 1


@requires_pyright
def test_server_killed_between_requests_is_restarted_transparently() -> None:
    """A server found dead before a request is replaced first, so that request still gets an answer."""
    assert PYRIGHT is not None
    with LanguageServer(PYRIGHT) as ls:
        assert ls.diagnose("a = 1\n").status == "clean"
        conn = ls.connection
        assert conn is not None
        os.killpg(conn.pid, signal.SIGKILL)
        conn._proc.wait()
        assert ls.diagnose("b = nope\n").status == "diagnostics"
        assert ls.restarts == 1


@requires_pyright
def test_periodic_restart() -> None:
    """After restart_every documents the server is replaced (not counted as a failure restart)."""
    assert PYRIGHT is not None
    with LanguageServer(PYRIGHT, restart_every=2) as ls:
        statuses = [ls.diagnose(f"x{i} = {i}\n").status for i in range(3)]
        assert statuses == ["clean"] * 3
        assert ls.starts == 2
        assert ls.restarts == 0


@requires_pyright
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_server_runs_without_network_and_without_privileges(server: LanguageServer) -> None:
    """The server process has its own network namespace, no capabilities, and is nobody when we are root."""
    assert server.diagnose("x = 1\n").status == "clean"
    conn = server.connection
    assert conn is not None
    assert conn.isolation == "bwrap"
    node = [
        p
        for p in _descendants(conn.pid)
        if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].endswith(b"node")
    ]
    assert len(node) == 1
    assert os.readlink(f"/proc/{node[0]}/ns/net") != os.readlink("/proc/self/ns/net")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{node[0]}/status").read_text().splitlines())
    assert int(status["CapEff"], 16) == 0
    if os.geteuid() == 0:
        # As documented in servers.py: the server drops to nobody when nobody can read its files; a
        # checkout in a private folder (mktemp's mode 700) keeps it as the jail's root, still without
        # capabilities (asserted above).
        spec = pyright_spec()
        readable = all(_others_can_read(path) for path in spec.read_paths)
        assert status["Uid"].split()[0] == ("65534" if readable else "0")


def test_a_server_installed_under_tmp_is_bound_over_the_private_tmp(tmp_path: Path) -> None:
    """The jail's private /tmp is mounted before the server's own paths: a checkout or virtualenv under
    /tmp (as CI's clone may be) stays visible inside the jail instead of hidden by the tmpfs."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    spec = ServerSpec("fake", "0", ("/usr/bin/true",), "python", ".py", read_paths=("/tmp/venv/pyright",))
    argv = list(jail_command(spec, host_workspace=str(tmp_path)).argv)
    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs + 1] == "/tmp"
    bind = argv.index("/tmp/venv/pyright")
    assert argv[bind - 1] == "--ro-bind"
    assert tmpfs < bind
