"""Alembic environment: migrations run on the connection the store hands over."""

from alembic import context

from cellplane.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("cellplane migrations run through cellplane.store.migrate, with a connection")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
