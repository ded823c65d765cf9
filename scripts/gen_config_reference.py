#!/usr/bin/env python3
"""Markdown reference of a pydantic configuration model (the logic: prmforge/schemas/config_reference.py).

    scripts/gen_config_reference.py MODULE:MODEL                    # print it
    scripts/gen_config_reference.py MODULE:MODEL --check README.md  # exit 1 with a diff if stale
    scripts/gen_config_reference.py MODULE:MODEL --write README.md  # rewrite the block

The README holds the reference between ``<!-- config-reference:start -->`` and
``<!-- config-reference:end -->``.
"""

from __future__ import annotations

import sys

from prmforge.schemas.config_reference import main, render_reference, replace_block

__all__ = ["main", "render_reference", "replace_block"]

if __name__ == "__main__":
    sys.exit(main())
