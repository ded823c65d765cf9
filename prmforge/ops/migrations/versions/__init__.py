"""The registry's revisions (Alembic skips this file)."""
