"""The registry's Alembic script directory, run by :func:`prmforge.ops.db.migrate` (no ``alembic.ini``).

A developer adds a revision with ``alembic -x url=... revision --autogenerate -m "..."`` from a config
whose ``script_location`` is this folder, then updates :data:`prmforge.ops.db.HEAD`.
"""
