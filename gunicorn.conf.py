"""Gunicorn settings for both APIs (bind address comes from the command line)."""

import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# SIGTERM: stop accepting, let running requests finish for up to this long.
graceful_timeout = 20
timeout = 30
keepalive = 5
accesslog = None  # the apps log their own JSON lines
errorlog = "-"
