"""docker-compose.yml is valid and wires the processes as the design asks."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from settings import ROOT

SCALED = ("projection-worker", "relay-worker", "notification-worker")
ONE_SHOT = ("setup", "db-access", "db-grants")
SECRETS = (
    "POSTGRES_PASSWORD",
    "PG_AUTH_PASSWORD",
    "PG_RELAY_PASSWORD",
    "PG_PROJECTION_PASSWORD",
    "PG_READER_PASSWORD",
    "PG_NOTIFIER_PASSWORD",
    "RABBITMQ_PASSWORD",
    "FLOWER_BASIC_AUTH",
)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .env services/compose_env.sh writes: a generated password for each credential."""
    path = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run(
        ["bash", str(ROOT / "services" / "compose_env.sh")], env={"ENV_FILE": str(path)}, check=True
    )
    assert path.stat().st_mode & 0o777 == 0o600
    return path


@functools.cache
def _compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    # `make test` installs Debian's docker-compose where the Docker CLI lacks the plugin.
    assert shutil.which("docker-compose"), "no Compose CLI: run `bash services/tools.sh`"
    return ["docker-compose"]


def _run_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_compose_command(), "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


@functools.cache
def _compose_config(env_file: Path) -> str:
    # Rendered once per .env: each `config` run costs most of a second.
    result = _run_config(env_file)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_compose_file_is_valid_and_complete(env_file):
    config = yaml.safe_load(_compose_config(env_file))
    services = config["services"]
    assert {
        "auth-api",
        "query-api",
        "projector",
        "relay-worker",
        "projection-worker",
        "notifier",
        "notification-worker",
        "mailcatcher",
        "beat",
        "flower",
        "kafka",
        "postgres-auth",
        "postgres-query",
        "rabbitmq",
        "redis",
    } <= set(services)
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert "healthcheck" in service, f"{name} has no healthcheck"
    for name in SCALED:
        # Replicas need no fixed container name and no host port.
        assert "container_name" not in services[name]
        assert not services[name].get("ports")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    conditions = services["projector"]["depends_on"]
    assert conditions["kafka"]["condition"] == "service_healthy"
    # Both APIs count rate limits in the one shared store, and wait for it.
    for api in ("auth-api", "query-api"):
        assert services[api]["environment"]["RATE_LIMIT_STORAGE_URL"] == "redis://redis:6379/0"
        assert services[api]["depends_on"]["redis"]["condition"] == "service_healthy"
    # Every long-running container comes back after a crash (the one-shot setup does not).
    for name, service in services.items():
        expected = "no" if name in ONE_SHOT else "unless-stopped"
        assert service.get("restart") == expected, f"{name}: restart {service.get('restart')!r}"
    # Exactly one beat: it must not be replicated.
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_the_signing_key_is_mounted_only_into_the_write_side(env_file):
    services = yaml.safe_load(_compose_config(env_file))["services"]
    signing = {
        name
        for name, service in services.items()
        for volume in service.get("volumes") or []
        if (volume["source"] if isinstance(volume, dict) else volume.split(":")[0]) == "signing-key"
    }
    assert signing == {"auth-api", "setup"}  # setup writes the key pair once


def test_every_process_runs_its_procfile_line(env_file):
    """Compose defines no command line of its own: each container execs a Procfile line."""
    from services.procfile import process_definitions

    services = yaml.safe_load(_compose_config(env_file))["services"]
    started = {}
    for name, service in services.items():
        command = service.get("command") or []
        if command[:3] == ["python", "-m", "services.procfile"]:
            started[name] = command[3]
    assert set(started.values()) == set(process_definitions({}))
    assert all(name.replace("-", "_") == line for name, line in started.items())


def test_every_credential_is_required_never_defaulted():
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        uses = text.count("${" + name)
        assert uses and uses == text.count("${" + name + ":?"), name


@pytest.mark.parametrize("missing", ["FLOWER_BASIC_AUTH"])
def test_compose_refuses_to_start_without_a_generated_credential(env_file, tmp_path, missing):
    partial = tmp_path / ".env"
    partial.write_text(
        "".join(line + "\n" for line in env_file.read_text().splitlines() if not line.startswith(missing))
    )
    result = _run_config(partial)
    assert result.returncode != 0
    assert "compose_env.sh" in result.stderr


def test_flower_takes_its_credential_from_the_environment_and_listens_on_localhost_only(env_file):
    text = _compose_config(env_file)
    assert "admin:admin" not in text and "guest" not in text and "cqrs:cqrs" not in text
    flower = yaml.safe_load(text)["services"]["flower"]
    ports = flower["ports"]
    assert ports and all(
        (p.get("host_ip") if isinstance(p, dict) else p.split(":")[0]) == "127.0.0.1" for p in ports
    )
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("flower:")
    assert "--basic-auth" not in " ".join(flower["command"])  # never on a command line
    from services.procfile import process_definitions

    assert "--basic-auth" not in " ".join(process_definitions({})["flower"].argv)


def test_each_process_kind_gets_only_its_own_database_role(env_file):
    services = yaml.safe_load(_compose_config(env_file))["services"]
    expected = {
        "auth-api": {"AUTH_DATABASE_URL": "cqrs_auth"},
        "query-api": {"QUERY_DATABASE_URL": "cqrs_reader"},
        "relay-worker": {"RELAY_DATABASE_URL": "cqrs_relay"},
        # The consumers that open personal fields read the data keys in auth_db as themselves.
        "projection-worker": {
            "PROJECTION_DATABASE_URL": "cqrs_projection",
            "PROJECTION_KEYS_DATABASE_URL": "cqrs_projection",
        },
        "notification-worker": {
            "NOTIFIER_DATABASE_URL": "cqrs_notifier",
            "NOTIFIER_KEYS_DATABASE_URL": "cqrs_notifier",
        },
        "projector": {},
        "notifier": {},
        "mailcatcher": {},
        "beat": {},
        "flower": {},
    }
    for name, urls in expected.items():
        environment = services[name]["environment"]
        found = {
            key: value.split("://")[1].split(":")[0]
            for key, value in environment.items()
            if key.endswith("DATABASE_URL")
        }
        assert found == urls, name
    # The master key that opens every data key is mounted only where events are sealed or opened.
    holders = {
        n for n, s in services.items() if any("/keys/master" in str(v) for v in s.get("volumes") or [])
    }
    assert holders == {"setup", "auth-api", "projection-worker", "notification-worker"}


@functools.cache
def _cluster_config(env_file: Path) -> dict:
    result = subprocess.run(
        [
            *_compose_command(),
            "--env-file",
            str(env_file),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "-f",
            str(ROOT / "docker-compose.cluster.yml"),
            "config",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_the_cluster_profile_has_three_brokers_and_a_read_replica(env_file):
    services = _cluster_config(env_file)
    brokers = ("kafka", "kafka-2", "kafka-3")
    voters = {services[b]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in brokers}
    assert voters == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert sorted(int(services[b]["environment"]["KAFKA_NODE_ID"]) for b in brokers) == [1, 2, 3]
    for broker in brokers:
        environment = services[broker]["environment"]
        assert int(environment["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        assert int(environment["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 3
        assert services[broker]["restart"] == "unless-stopped" and "healthcheck" in services[broker]
    assert "--replication-factor 3 --min-insync-replicas 2" in " ".join(services["setup"]["command"])
    # Every client gets the three brokers; nothing else about it changes.
    for name, service in services.items():
        bootstrap = (service.get("environment") or {}).get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap is not None:
            assert bootstrap == "kafka:9092,kafka-2:9092,kafka-3:9092", name
    # The read API reads the replica, as its read-only role; the projection writes the primary.
    reader = services["query-api"]["environment"]["QUERY_DATABASE_URL"]
    assert reader.startswith("postgresql+psycopg2://cqrs_reader:") and "@postgres-query-replica:" in reader
    assert "@postgres-query:" in services["projection-worker"]["environment"]["PROJECTION_DATABASE_URL"]
    replica = services["postgres-query-replica"]
    assert "pg_basebackup" in " ".join(replica["command"]) and "healthcheck" in replica
    assert services["query-api"]["depends_on"]["postgres-query-replica"]["condition"] == "service_healthy"
    assert services["db-replication"]["restart"] == "no"
    # The base file's guarantees hold in the profile too (roles, credentials required).
    assert "REPLICATION_PASSWORD" in services["db-replication"]["environment"]


def test_the_cluster_file_requires_its_credential_too():
    text = (ROOT / "docker-compose.cluster.yml").read_text()
    for name in (*SECRETS, "PG_REPLICATION_PASSWORD"):
        assert text.count("${" + name) == text.count("${" + name + ":?"), name
    assert text.count("${PG_REPLICATION_PASSWORD:?") >= 2
