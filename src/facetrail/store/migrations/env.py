"""Alembic environment: runs migrations on the engine facetrail hands over (never from a URL in an ini file)."""

from alembic import context

from facetrail.accountability import schema as accountability_schema  # noqa: F401  (registers the tables)
from facetrail.gallery import schema as gallery_schema  # noqa: F401
from facetrail.store import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
