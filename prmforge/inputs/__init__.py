"""Data users bring: problem files and rollout files, read in shards, parsed row by row.

The runner opens each configured input with :func:`open_problems` or
:func:`open_rollouts`, plans it into :class:`RowRange` shards, reads each
range as :class:`RawRow` payloads, and parses every row (a bad row raises
:class:`~prmforge.schemas.errors.RowError` naming its field and is
quarantined). See ``docs/inputs.md``.
"""

from prmforge.inputs.problems import ProblemReader, open_problems
from prmforge.inputs.rollouts import ImportedRollout, RolloutReader, open_rollouts
from prmforge.inputs.rows import RawRow, RowRange
from prmforge.inputs.segment import segment_steps

__all__ = [
    "ImportedRollout",
    "ProblemReader",
    "RawRow",
    "RolloutReader",
    "RowRange",
    "open_problems",
    "open_rollouts",
    "segment_steps",
]
