"""Alembic environment: migrations run on the connection that :func:`breastdx.serve.db.migrate` hands over
(``config.attributes["connection"]``); there is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context

from breastdx.serve.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
