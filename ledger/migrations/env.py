"""Alembic's environment for the ledger. `ledger.migrations.upgrade` runs it on a connection it has
already locked and begun a transaction on (config.attributes["connection"]); the migrations then run
inside that transaction, and the caller commits."""
from alembic import context
from sqlalchemy import engine_from_config, pool

from ledger.models import Base

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("the ledger's migrations move data (attached_at into facts): run them online, on a connection")

connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # `alembic revision --autogenerate` and friends, with sqlalchemy.url set on the config
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
