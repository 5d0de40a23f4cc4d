"""docker-compose.yml cannot run here (no container engine), so check what can be checked."""

from pathlib import Path

import yaml

from missed_session.config import Settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def test_compose_runs_the_embedded_stacks_pieces() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert set(compose["services"]) == {"postgres", "temporal", "worker"}
    assert compose["services"]["temporal"]["command"][:2] == ["server", "start-dev"]
    assert compose["services"]["worker"]["command"][-1].endswith("python worker.py")


def test_compose_worker_environment_names_real_settings() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    environment = compose["services"]["worker"]["environment"]
    settings_fields = {f"MSR_{name.upper()}" for name in Settings.model_fields}
    assert set(environment) <= settings_fields, set(environment) - settings_fields
    assert environment["MSR_TEMPORAL_ADDRESS"].startswith("temporal:")


def test_compose_publishes_ports_on_loopback_only() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
