"""The migrations build the schema the models describe, on SQLite and on PostgreSQL."""

from __future__ import annotations

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from authserver import create_app
from authserver.extensions import db

from conftest import TEST_SETTINGS, dispose


def test_models_and_migrations_agree(_schema_app):
    # The suite's schema was made by `flask db upgrade` (see conftest): autogenerate must find
    # nothing to add, drop or change, so a model change without a migration fails here.
    with _schema_app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_upgrade_and_downgrade_on_an_empty_database(empty_database):
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": empty_database("updown")})
    try:
        with app.app_context():
            flask_migrate.upgrade()
            tables = set(inspect(db.engine).get_table_names())
            assert {t.name for t in db.metadata.sorted_tables} <= tables
            assert "alembic_version" in tables
            flask_migrate.downgrade(revision="base")
            assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
            flask_migrate.upgrade()
            assert {t.name for t in db.metadata.sorted_tables} <= set(inspect(db.engine).get_table_names())
    finally:
        dispose(app)
