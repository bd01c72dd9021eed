"""Gunicorn settings for both APIs (the bind address comes from the command line)."""

import os
import shutil

from settings import load_settings

_settings = load_settings()
_read_side = _settings.service_name.startswith("query_api")
workers = _settings.query_web_workers if _read_side else _settings.web_workers
worker_class = "gthread"
threads = _settings.query_web_threads if _read_side else _settings.web_threads
# SIGTERM: stop accepting, let running requests finish for up to this long.
graceful_timeout = 20
timeout = 30
keepalive = 5
accesslog = None  # the apps log their own JSON lines
errorlog = "-"

# Prometheus multiprocess mode: every worker writes its own metric files, /metrics merges
# them. prometheus_client reads the directory from the environment when first imported
# (workers are forks of this master and inherit its modules), hence it is set here.
_metrics_dir = _settings.data_dir / "prometheus" / f"{_settings.service_name}-{os.getpid()}"
shutil.rmtree(_metrics_dir, ignore_errors=True)
_metrics_dir.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
