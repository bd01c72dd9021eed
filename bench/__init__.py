"""Benchmarks of the pipeline against the real local servers (``make bench``).

Every script runs in its own isolated environment (``bench.environment``): databases
``auth_bench``/``query_bench``, its own Kafka topics and consumer groups, the RabbitMQ vhost
``cqrs_bench`` and its own ports, so it never touches the dev or the test data. Importing a
module of this package changes nothing; only ``main()`` switches the environment, so run the
scripts as processes (``python -m bench.run_all --tiny``), not in a test's own process.
"""
