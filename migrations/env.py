"""Alembic environment for authserver, run through Flask-Migrate (`flask --app wsgi db ...`).

The target metadata is the models' (with the naming convention from authserver.extensions, so
constraint names are identical on SQLite and PostgreSQL). ``render_as_batch`` makes ALTERs work on
SQLite, which cannot alter most things in place; it is harmless on PostgreSQL.
"""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config

# Logging comes from alembic.ini only when the process has none of its own (the flask CLI); a
# process that configured logging (the test suite) keeps its handlers and loggers as they are.
if config.config_file_name is not None and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

#: compare_type: autogenerate also notices changed column types (lengths, Text vs String).
COMPARE_OPTIONS = {"compare_type": True, "render_as_batch": True}


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_metadata():
    return current_app.extensions["migrate"].db.metadata


config.set_main_option(
    "sqlalchemy.url", get_engine().url.render_as_string(hide_password=False).replace("%", "%%")
)


def run_migrations_offline():
    """Emit SQL to stdout (`flask db upgrade --sql`) instead of running it."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=get_metadata(),
        literal_binds=True,
        **COMPARE_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run the migrations on a connection from the app's engine."""

    def process_revision_directives(context, revision, directives):
        # `flask db migrate` with no model change writes no empty revision.
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    for key, value in COMPARE_OPTIONS.items():
        conf_args.setdefault(key, value)

    with get_engine().connect() as connection:
        context.configure(connection=connection, target_metadata=get_metadata(), **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
