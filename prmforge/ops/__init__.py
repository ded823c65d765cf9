"""Operations around builds: the build registry (an index of every build, in a SQL database) and
scheduled builds (cron schedules stored in the same database, run by ``prmforge scheduler run``).

- :mod:`prmforge.ops.db`: where the registry lives, opening it (engine settings, migrations).
- :mod:`prmforge.ops.registry_schema`: the tables (SQLAlchemy ORM) and their snapshots.
- :mod:`prmforge.ops.registry`: reading and writing builds.
- :mod:`prmforge.ops.registry_recorder`: what ``prmforge build`` records while it runs.
- :mod:`prmforge.ops.registry_manifest`: the registry against the manifest on disk (the truth).
- :mod:`prmforge.ops.scheduler`: schedules (cron triggers in APScheduler's job store).
- :mod:`prmforge.ops.scheduler_run`: the long-running scheduler process.

This package may import :mod:`prmforge.pipelines` (it reads manifests and starts builds); only command
line modules import it.
"""
