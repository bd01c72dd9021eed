"""``celery -A bench.patched_celery``: the project's Celery app with bench/prototypes.py applied.

Used only by benchmark worker processes (``projection_bench --variant prototype``).
"""

from bench import prototypes
from celery_config.app import celery_app

prototypes.install_in_worker()

__all__ = ["celery_app"]
