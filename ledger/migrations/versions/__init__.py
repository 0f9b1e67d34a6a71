"""Alembic revisions of the ledger (a package so they ship with it; Alembic skips this file)."""
