from __future__ import annotations

from pathlib import Path

import pytest

from prmforge.schemas.errors import ConfigError
from prmforge.schemas.yaml_file import read_yaml


def test_a_yaml_file_reads_as_its_data(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\nb: [x, y]\n")
    assert read_yaml(path) == {"a": 1, "b": ["x", "y"]}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such training configuration file"),
        (lambda p: (p.mkdir(), p)[1], "is a directory, not a training configuration file"),
        (lambda p: (p.write_bytes(b"\xff\xfe"), p)[1], "cannot read the training configuration"),
        (lambda p: (p.write_text("a: [1,"), p)[1], "not valid YAML"),
    ],
    ids=["missing", "directory", "not-utf8", "bad-yaml"],
)
def test_what_cannot_be_read_is_named_with_the_file(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path / "t.yaml")
    with pytest.raises(ConfigError) as err:
        read_yaml(path, "training configuration")
    assert str(err.value).startswith(f"{path}: {message}")
