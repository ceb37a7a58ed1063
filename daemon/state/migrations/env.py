"""Alembic's entry point for the state store: always run by `daemon.state.schema` on a connection it
opened (and, on PostgreSQL, holds an advisory lock on), never from an alembic.ini."""

from alembic import context

from daemon.state.store import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
