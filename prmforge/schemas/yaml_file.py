"""Reading a YAML configuration file, with errors that name the file and what went wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from prmforge.schemas.errors import ConfigError


def read_yaml(path: Path, what: str = "configuration") -> Any:
    """The parsed YAML of ``path`` (a ``what``, for the messages)."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a {what} file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the {what} ({err})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
