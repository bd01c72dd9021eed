"""Gunicorn entry points: ``gunicorn wsgi:auth_app`` and ``gunicorn wsgi:query_app``."""

import os

from auth_api import create_app as create_auth_app
from observability.logs import configure_logging
from query_api import create_app as create_query_app

configure_logging(os.environ.get("SERVICE_NAME", "api"))

auth_app = create_auth_app()
query_app = create_query_app()
