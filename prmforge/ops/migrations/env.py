"""Alembic's environment for the registry.

Run by :func:`prmforge.ops.db.migrate`, which passes an open connection (inside its transaction) as
``config.attributes["connection"]``. Run by hand (``alembic`` with this folder as ``script_location``),
it connects to ``-x url=URL``, else to the registry :func:`prmforge.ops.db.resolve_url` finds.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from prmforge.ops.db import include_name, make_registry_engine, resolve_url
from prmforge.ops.registry_schema import VERSION_TABLE, Base


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        compare_type=True,
        render_as_batch=True,  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _configure(given)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or resolve_url(None)
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                          literal_binds=True)  # fmt: skip
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_registry_engine(url)
    try:
        with engine.connect() as connection:
            _configure(connection)
            connection.commit()
    finally:
        engine.dispose()


run()
