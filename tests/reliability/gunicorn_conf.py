"""gunicorn configuration for the reliability tests: keeps `wsgi:app` hermetic.

Flask derives the instance folder from the package location, so `gunicorn wsgi:app` started from
the checkout would read the developer's instance/config.py (their secret key and whatever else is
in it). tests/conftest.py prevents that in-process by patching Flask.auto_find_instance_path; this
file does the same in the gunicorn master, before any worker imports wsgi (workers are forked from
the master, so they inherit the patch). The folder comes from RELIABILITY_INSTANCE_PATH.

Every gunicorn setting stays on the command line; names defined here that are not gunicorn
settings are ignored by gunicorn.
"""

import os

from flask import Flask

_INSTANCE_PATH = os.environ["RELIABILITY_INSTANCE_PATH"]
Flask.auto_find_instance_path = lambda self: _INSTANCE_PATH
