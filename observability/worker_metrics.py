"""Metrics of a Celery worker: its pool processes write files, the main process serves them.

Enabled by the ``CELERY_METRICS_PORT`` setting. Must run before ``observability.metrics`` is
imported: the client picks a metric's storage (memory or files) when the metric is made.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

from settings import Settings


def enable_worker_metrics(settings: Settings) -> None:
    port = settings.celery_metrics_port
    if not port:
        return
    if "observability.metrics" in sys.modules:  # our metrics exist already, in process memory
        logging.getLogger(__name__).warning("worker metrics enabled too late: not served")
        return
    directory = settings.data_dir / "prometheus" / f"celery-{port}-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    # prometheus_client reads its storage directory from the environment, in every fork.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    if "prometheus_client" in sys.modules:
        # The celery command imported it already (Flower's plugin does, before the app
        # module), with in-memory values: switch metrics made from now on to files.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()

    from celery.signals import worker_process_shutdown, worker_ready

    @worker_ready.connect(weak=False)
    def _serve(**_: object) -> None:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        try:
            start_http_server(
                port, addr=settings.metrics_address, registry=registry
            )
        except OSError as exc:  # a second worker on one host: it still works, unscraped
            logging.getLogger(__name__).warning("metrics port %s unavailable: %s", port, exc)

    @worker_process_shutdown.connect(weak=False)
    def _forget(**_: object) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
