"""Alembic's environment for the connector's state: run by connector.core.storage.migrate at start.

The connection comes from the caller (``config.attributes["connection"]``), inside the transaction that holds the
migration lock, so that two replicas starting together upgrade one after the other. Each store is a branch of one
history (``queue`` is the action queue): a SQLite file holds the branch of its own store, a PostgreSQL database
may hold them all in one version table.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `connector` (connector.core.storage.migrate): it passes the connection")

context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
