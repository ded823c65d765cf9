"""What every command module shares: the consoles and how our errors end a command."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from prmforge.pipelines.config import BuildConfig, load_config
from prmforge.schemas.errors import PrmforgeError

# Wide enough for the summary tables when the output is a pipe or a log file.
console = Console(width=None if sys.stdout.isatty() else 120)
# Messages are never wrapped: a log, a scheduler or a script reads each as one line.
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120, soft_wrap=True)


@contextmanager
def user_errors(exit_code: int, prefix: str = "") -> Iterator[None]:
    """Our own errors end the command with their message (naming the field) and an exit code, no traceback."""
    try:
        yield
    except PrmforgeError as err:
        err_console.print(f"[red]error[/red] {prefix}{err}")
        raise typer.Exit(exit_code) from None


def load_or_exit(config: Path) -> BuildConfig:
    with user_errors(2):
        return load_config(config)
