"""Gunicorn settings for both APIs (bind address comes from the command line)."""

import os
import shutil
from pathlib import Path

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# SIGTERM: stop accepting, let running requests finish for up to this long.
graceful_timeout = 20
timeout = 30
keepalive = 5
accesslog = None  # the apps log their own JSON lines
errorlog = "-"

# Prometheus multiprocess mode: every worker writes its own metric files, /metrics merges
# them. The variable must be set before prometheus_client is first imported (workers are
# forks of this master and inherit its modules), hence plain os/shutil here.
_metrics_dir = (
    Path(os.environ.get("DATA_DIR", ".data"))
    / "prometheus"
    / (f"{os.environ.get('SERVICE_NAME', 'api')}-{os.getpid()}")
)
shutil.rmtree(_metrics_dir, ignore_errors=True)
_metrics_dir.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
