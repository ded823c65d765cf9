"""Input paths that cannot be read say what they are; digests follow the bytes."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from inputs_fixtures import PROBLEMS, write_jsonl, write_parquet

from prmforge.inputs import open_problems, open_rollouts
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.inputs import ProblemsInput, RolloutsInput


def problems_error(path: Path, **cfg: Any) -> str:
    with pytest.raises(ConfigError) as info:
        open_problems(ProblemsInput.model_validate({"path": str(path), **cfg}), 2)
    return str(info.value)


def rollouts_error(path: Path, **cfg: Any) -> str:
    with pytest.raises(ConfigError) as info:
        open_rollouts(RolloutsInput.model_validate({"path": str(path), **cfg}), 0)
    return str(info.value)


def test_missing(tmp_path: Path) -> None:
    assert (
        problems_error(tmp_path / "nope.jsonl") == f"inputs.2.path: {tmp_path / 'nope.jsonl'} does not exist"
    )
    missing = tmp_path / "a" / "b.parquet"
    assert rollouts_error(missing) == f"inputs.0.path: {missing} does not exist"
    (tmp_path / "file").write_text("x")
    under_file = tmp_path / "file" / "x.jsonl"
    assert problems_error(under_file) == (
        f"inputs.2.path: {under_file} does not exist (a parent of it is not a directory)"
    )


def test_directory_where_a_file_is_needed(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    d = tmp_path / "d"
    assert problems_error(d, format="jsonl") == f"inputs.2.path: {d} is a directory, not a file"
    assert problems_error(d, format="parquet") == f"inputs.2.path: {d} is a directory, not a file"
    assert rollouts_error(d) == f"inputs.0.path: {d} is a directory, not a file"
    assert rollouts_error(d, format="json") == f"inputs.0.path: {d} is a directory, not a file"


def test_file_where_a_directory_is_needed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", PROBLEMS)
    assert problems_error(path, format="datasets") == f"inputs.2.path: {path} is a file, not a directory"


def test_fifo_socket_and_device(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    assert problems_error(fifo) == f"inputs.2.path: {fifo} is a FIFO, not a regular file"
    assert rollouts_error(fifo) == f"inputs.0.path: {fifo} is a FIFO, not a regular file"
    sock_path = tmp_path / "s.jsonl"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        assert problems_error(sock_path) == f"inputs.2.path: {sock_path} is a socket, not a regular file"
    assert (
        rollouts_error(Path("/dev/null"))
        == "inputs.0.path: /dev/null is a character device, not a regular file"
    )


def test_symlinks(tmp_path: Path) -> None:
    loop_a, loop_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    assert problems_error(loop_a) == f"inputs.2.path: {loop_a} is a symlink loop"
    assert rollouts_error(loop_b) == f"inputs.0.path: {loop_b} is a symlink loop"
    broken = tmp_path / "broken.jsonl"
    broken.symlink_to(tmp_path / "gone.jsonl")
    assert (
        problems_error(broken)
        == f"inputs.2.path: {broken} is a broken symlink (to {tmp_path / 'gone.jsonl'})"
    )
    target = write_jsonl(tmp_path / "real.jsonl", PROBLEMS)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    reader = open_problems(ProblemsInput(path=link), 0)
    assert list(reader.digests()) == [str(target)]
    assert reader.source == "problems:link.jsonl"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", PROBLEMS)
    path.chmod(0)
    assert problems_error(path) == f"inputs.2.path: {path} is a file that is not readable (permission denied)"


def test_format_cannot_be_guessed_or_does_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("question,answer\n")
    assert problems_error(path) == (
        f"inputs.2.format: cannot tell the format of {path} from its suffix '.csv'; "
        "set format to one of jsonl, json, parquet, datasets"
    )
    jsonl = write_jsonl(tmp_path / "p.jsonl", PROBLEMS)
    assert problems_error(jsonl, split="train") == "inputs.2.split: only used for a `datasets` directory"


def test_bad_whole_files(tmp_path: Path) -> None:
    array = tmp_path / "a.json"
    array.write_text('[{"question": "q"}, ')
    reader = open_rollouts(RolloutsInput(path=array), 0)
    with pytest.raises(ConfigError, match=re.escape(f"inputs.0.path: {array} is not valid JSON: ")):
        reader.plan(4)
    obj = tmp_path / "o.json"
    obj.write_text('{"rows": []}')
    reader = open_rollouts(RolloutsInput(path=obj, format="json"), 0)
    with pytest.raises(
        ConfigError, match=re.escape(f"inputs.0.path: {obj} holds a JSON dict, not an array of rows")
    ):
        reader.plan(4)
    fake = tmp_path / "f.parquet"
    fake.write_bytes(b"not parquet at all")
    assert problems_error(fake).startswith(f"inputs.2.path: {fake} is not a readable Parquet file: ")


def test_json_suffix_is_sniffed(tmp_path: Path) -> None:
    lines = write_jsonl(tmp_path / "lines.json", [{"question": "Q?", "steps": ["a"]}] * 3)
    ranges = open_rollouts(RolloutsInput(path=lines), 0).plan(2)
    assert [rng.cursor for rng in ranges] == [0, 2 * (len(lines.read_bytes()) // 3)]
    array = tmp_path / "array.json"
    array.write_text(' \n[{"question": "Q?", "steps": ["a"]}]')
    assert [rng.cursor for rng in open_rollouts(RolloutsInput(path=array), 0).plan(2)] == [None]


def test_jsonl_cursor_checks_the_file_did_not_move(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", PROBLEMS)
    reader = open_problems(ProblemsInput(path=path), 0)
    ranges = reader.plan(2)
    path.write_text("x" + path.read_text())
    with pytest.raises(
        ConfigError, match=r"the file changed since it was planned \(row 2 no longer starts at byte"
    ):
        list(reader.read(ranges[1]))


def test_digests_change_with_the_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", PROBLEMS)
    reader = open_problems(ProblemsInput(path=path), 0)
    before = reader.digests()
    assert list(before) == [str(path.resolve())]
    assert before == reader.digests()
    write_jsonl(path, PROBLEMS[:4])
    assert reader.digests() != before
    parquet = write_parquet(tmp_path / "p.parquet", [{"question": "q?", "answer": "1"}])
    first = open_rollouts(
        RolloutsInput(path=parquet, columns={"steps": None, "text": "question"}), 0
    ).digests()
    write_parquet(parquet, [{"question": "q?", "answer": "2"}])
    assert (
        open_rollouts(RolloutsInput(path=parquet, columns={"steps": None, "text": "question"}), 0).digests()
        != first
    )


def test_datasets_directory_digests_every_data_file(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    write_parquet(hub / "data" / "train-00000-of-00002.parquet", [{"question": "a?", "answer": "1"}])
    write_parquet(hub / "data" / "train-00001-of-00002.parquet", [{"question": "b?", "answer": "2"}])
    (hub / "README.md").write_text("# A dataset\n")
    (hub / ".cache").mkdir()
    (hub / ".cache" / "lock").write_text("")
    reader = open_problems(ProblemsInput(path=hub), 0)
    before = reader.digests()
    assert sorted(before) == [
        str(hub / "README.md"),
        str(hub / "data" / "train-00000-of-00002.parquet"),
        str(hub / "data" / "train-00001-of-00002.parquet"),
    ]
    write_parquet(hub / "data" / "train-00001-of-00002.parquet", [{"question": "c?", "answer": "3"}])
    after = reader.digests()
    assert after[str(hub / "README.md")] == before[str(hub / "README.md")]
    assert (
        after[str(hub / "data" / "train-00001-of-00002.parquet")]
        != before[str(hub / "data" / "train-00001-of-00002.parquet")]
    )


def test_parquet_cursor_checks_the_row_groups_did_not_move(tmp_path: Path) -> None:
    rows = [{"question": f"q{k}?", "answer": str(k)} for k in range(6)]
    path = write_parquet(tmp_path / "p.parquet", rows, row_group_size=3)
    ranges = open_problems(ProblemsInput(path=path), 0).plan(2)
    assert [rng.cursor for rng in ranges] == [0, 0, 1]
    write_parquet(path, rows, row_group_size=1)
    with pytest.raises(
        ConfigError, match=r"the file changed since it was planned \(row 2 is no longer in row group 0\)"
    ):
        list(open_problems(ProblemsInput(path=path), 0).read(ranges[1]))
