"""Alembic environment for radpilot; run through :meth:`radpilot.store.Database.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from radpilot.store import (
    models_pipeline,  # noqa: F401 - registers the pipeline tables
    models_validation,  # noqa: F401 - and the validation tables
)
from radpilot.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    """Migrate over the connection handed in by radpilot, or over a fresh engine."""
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            context.configure(
                connection=conn,
                target_metadata=target_metadata,
                render_as_batch=conn.dialect.name == "sqlite",
            )
            context.run_migrations()
        return
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
