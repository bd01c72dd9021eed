"""docker-compose.yml is valid and wires the processes as the design asks."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from settings import ROOT

SCALED = ("projection-worker", "relay-worker")


def _compose_config() -> str:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    else:
        # `make test` installs Debian's docker-compose where the Docker CLI lacks the plugin.
        assert shutil.which("docker-compose"), "no Compose CLI: run `bash services/tools.sh`"
        command = ["docker-compose"]
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_compose_file_is_valid_and_complete():
    config = yaml.safe_load(_compose_config())
    services = config["services"]
    assert {
        "auth-api",
        "query-api",
        "projector",
        "relay-worker",
        "projection-worker",
        "beat",
        "flower",
        "kafka",
        "postgres-auth",
        "postgres-query",
        "rabbitmq",
    } <= set(services)
    for name, service in services.items():
        if name != "setup":
            assert "healthcheck" in service, f"{name} has no healthcheck"
    for name in SCALED:
        # Replicas need no fixed container name and no host port.
        assert "container_name" not in services[name]
        assert not services[name].get("ports")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    conditions = services["projector"]["depends_on"]
    assert conditions["kafka"]["condition"] == "service_healthy"
    # Every long-running container comes back after a crash (the one-shot setup does not).
    for name, service in services.items():
        expected = "no" if name == "setup" else "unless-stopped"
        assert service.get("restart") == expected, f"{name}: restart {service.get('restart')!r}"
    # Exactly one beat: it must not be replicated.
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_the_signing_key_is_mounted_only_into_the_write_side():
    services = yaml.safe_load(_compose_config())["services"]
    signing = {
        name
        for name, service in services.items()
        for volume in service.get("volumes") or []
        if (volume["source"] if isinstance(volume, dict) else volume.split(":")[0]) == "signing-key"
    }
    assert signing == {"auth-api", "setup"}  # setup writes the key pair once
    for name, service in services.items():
        command = " ".join(service.get("command") or []) if isinstance(service.get("command"), list) else ""
        assert "celery_config " not in command + " ", f"{name}: workers start from celery_config.worker"
