"""The deployment files, checked without a container engine (none runs on these machines).

docker-compose.yml is validated against the Compose Specification's JSON schema (vendored:
tests/schemas/compose-spec.json, compose-spec/compose-go release v2.13.0, see
tests/schemas/README.md), then read as the service would read it: every variable our
services are given is a setting the settings model knows, every setting a service needs in
this deployment is given, and the values, with the example .env and secret files, pass the
same validation the processes run at start. The Dockerfile is checked for a pinned base, a
non-root user and no secrets in its layers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from pydantic import AliasChoices

from missed_session.codec.service import build_app
from missed_session.config import CONFIG_FILE_ENV, SECRETS_DIR_ENV, Settings, load_settings
from missed_session.temporal.search_attributes import ALL as SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
SERVICE_IMAGE = "missed-session-response"
ONE_SHOTS = {"temporal-schema", "temporal-namespace", "migrate", "search-attributes"}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")

NEEDED: dict[str, set[str]] = {
    "worker": {"temporal_address", "temporal_namespace", "database_url", "encryption_keys",
               "worker_deployment_name", "worker_build_id", "metrics_host", "log_format",
               "channel", "webhook_url", "webhook_secret"},
    "worker-next": {"temporal_address", "temporal_namespace", "database_url",
                    "encryption_keys", "worker_deployment_name", "worker_build_id",
                    "metrics_host", "log_format", "channel", "webhook_url", "webhook_secret"},
    "codec": {"codec_server_host", "codec_server_port", "codec_ui_origins",
              "codec_oidc_issuer", "codec_oidc_audience", "encryption_keys", "log_format"},
    "migrate": {"database_owner_url", "database_url", "encryption_keys", "log_format"},
    "search-attributes": {"temporal_address", "temporal_namespace", "encryption_keys",
                          "log_format"},
}
"""Per service of our image: the settings this deployment must give it (not defaults)."""


def _raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _example_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, as `docker compose` does."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        given = env.get(name)
        if op in (":-", "-"):
            return given if given or (op == "-" and given is not None) else arg
        if op in (":?", "?") and not given:
            raise KeyError(f"{name}: {arg}")
        return given or ""

    return VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def _compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    interpolated: dict[str, Any] = _interpolate(_raw(), _example_env() if env is None else env)
    return interpolated


def _referenced_variables() -> set[str]:
    return {match["name"] for match in VARIABLE.finditer(COMPOSE.read_text())}


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def _ours() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in _compose()["services"].items()
            if str(service.get("image", "")).startswith(f"{SERVICE_IMAGE}:")}


def _env_names() -> dict[str, str]:
    """Every variable name the settings model reads -> the setting it sets."""
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [f"MSR_{field_name}"]
        for choice in choices:
            names[str(choice).upper()] = field_name
    return names


def _secret_targets(service: Mapping[str, Any]) -> dict[str, str]:
    """Secret target file name -> the compose secret it comes from."""
    targets: dict[str, str] = {}
    for secret in service.get("secrets", []):
        if isinstance(secret, str):
            targets[secret] = secret
        else:
            targets[secret.get("target", secret["source"])] = secret["source"]
    return targets


def _example_secrets(directory: Path) -> dict[str, Path]:
    """The files deploy/make-secrets.sh writes, made by running it in a scratch checkout."""
    shutil.copytree(ROOT / "deploy", directory / "deploy")
    subprocess.run(["sh", "deploy/make-secrets.sh"], cwd=directory, check=True,
                   capture_output=True)
    return {path.name: path for path in (directory / "secrets").iterdir()}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("MSR_", "TEMPORAL_")):
            monkeypatch.delenv(name)


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for document in (_raw(), _compose()):
        errors = sorted(validator.iter_errors(document), key=lambda error: error.json_path)
        assert not errors, [f"{error.json_path}: {error.message}" for error in errors]


def test_the_schema_refuses_what_compose_refuses() -> None:
    """The vendored schema is the real one: it catches a misspelt key and a bad condition."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    broken = _compose()
    broken["services"]["worker"]["restart_policy"] = "always"
    broken["services"]["codec"]["depends_on"] = {"worker": {"condition": "service_ready"}}
    messages = [error.message for error in validator.iter_errors(broken)]
    assert any("restart_policy" in message for message in messages), messages
    assert any("service_ready" in message for message in messages), messages


def test_every_variable_has_a_value_in_the_example_env_and_every_example_is_used() -> None:
    raw = COMPOSE.read_text()
    required = {match["name"] for match in VARIABLE.finditer(raw) if match["op"] in (":?", "?")}
    example = _example_env()
    assert required <= set(example), required - set(example)
    assert set(example) <= _referenced_variables(), set(example) - _referenced_variables()
    with pytest.raises(KeyError, match="MSR_BUILD_ID"):
        _compose({name: value for name, value in example.items() if name != "MSR_BUILD_ID"})


def test_the_production_pieces_are_there() -> None:
    services = _compose()["services"]
    assert set(services) == {
        "temporal-postgres", "temporal-schema", "temporal", "temporal-namespace",
        "temporal-ui", "audit-postgres", "migrate", "search-attributes", "codec", "worker",
        "worker-next",
    }
    images = {name: service["image"] for name, service in services.items()}
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert images["temporal"].startswith("temporalio/server:")
    assert not any("auto-setup" in image for image in images.values())
    assert "temporal-sql-tool" in (ROOT / "deploy/temporal/setup-postgres.sh").read_text()
    schemas = (ROOT / "deploy/temporal/setup-postgres.sh").read_text()
    assert "temporal_visibility" in schemas
    assert services["temporal"]["environment"]["DB"] == "postgres12"


def test_images_are_pinned_to_versions_that_support_worker_versioning() -> None:
    for name, service in _compose()["services"].items():
        image = service["image"]
        tag = image.partition(":")[2]
        assert re.search(r"\d", tag), f"{name}: {image} is not pinned"
        assert tag != "latest", name
    services = _compose()["services"]
    assert Version(services["temporal"]["image"].split(":")[1]) >= Version("1.29.1")
    assert Version(services["temporal-ui"]["image"].split(":")[1]) >= Version("2.38")
    admin = {services[name]["image"] for name in ("temporal-schema", "temporal-namespace")}
    assert admin == {services["temporal"]["image"].replace("server", "admin-tools")}


def test_services_start_after_what_they_need_and_restart() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        assert service.get("restart"), f"{name} has no restart policy"
        if name in ONE_SHOTS:
            assert service["restart"].startswith("on-failure"), name
        else:
            assert service["restart"] == "unless-stopped", name
        for needed, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            if needed in ONE_SHOTS:
                assert condition == "service_completed_successfully", (name, needed)
            else:
                assert condition == "service_healthy", (name, needed)
                assert "healthcheck" in services[needed], f"{needed} has no health check"
    worker_needs = set(services["worker"]["depends_on"])
    assert worker_needs == {"migrate", "search-attributes"}
    assert set(services["search-attributes"]["depends_on"]) == {"temporal-namespace"}
    assert set(services["migrate"]["depends_on"]) == {"audit-postgres"}


def test_ports_are_published_on_loopback_only_and_workers_scale() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        assert "container_name" not in service, f"{name}: a fixed name prevents --scale"
    for name in ("worker", "worker-next"):
        worker = services[name]
        assert "ports" not in worker, "a fixed host port would stop a second replica"
        assert _environment(worker)["MSR_METRICS_HOST"] == "0.0.0.0"  # its container's address


def test_our_services_are_given_only_settings_the_settings_model_knows(
    clean_environment: None,
) -> None:
    known = _env_names()
    assert set(NEEDED) == set(_ours())
    for name, service in _ours().items():
        for variable in _environment(service):
            assert variable in known or variable in {CONFIG_FILE_ENV, SECRETS_DIR_ENV}, (
                f"{name}: {variable} is not a setting"
            )
        for target in _secret_targets(service):
            if target != "msr.toml":
                assert target in known, f"{name}: secret {target} is not a setting"
        if any(target in known for target in _secret_targets(service)):
            assert _environment(service)[SECRETS_DIR_ENV] == "/run/secrets", name


def test_each_service_starts_with_the_settings_it_needs(
    clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load each of our services' settings as its process would: compose environment, the
    secret files deploy/make-secrets.sh writes, the example config file."""
    secrets = _example_secrets(tmp_path)
    compose = _compose()
    for name, service in _ours().items():
        mounted = tmp_path / f"run-secrets-{name}"
        mounted.mkdir()
        for target, source in _secret_targets(service).items():
            file = Path(compose["secrets"][source]["file"]).name
            shutil.copy(secrets[file], mounted / target)
        with monkeypatch.context() as patch:
            for variable, value in _environment(service).items():
                patch.setenv(variable, value.replace("/run/secrets", str(mounted)))
            settings = load_settings()
            given = settings.model_fields_set
            missing = NEEDED[name] - given
            assert not missing, f"{name} lacks {missing}"
            if name == "codec":
                build_app(settings)  # refuses to start without issuer, audience and keys
            if name.startswith("worker"):
                assert settings.channel != "simulated"
                assert settings.database_url is not None
                assert settings.database_url.startswith("postgresql://msr_service:")
                assert "@audit-postgres:5432/" in settings.database_url
                # Least privilege: the schema owner's URL is the migrate step's alone.
                assert settings.database_owner_url is None


def test_the_pieces_agree_with_each_other() -> None:
    services = _compose()["services"]
    env = {name: _environment(service) for name, service in services.items()}
    example = _example_env()
    namespace = example["MSR_TEMPORAL_NAMESPACE"]
    assert env["temporal-namespace"]["NAMESPACE"] == namespace
    assert env["temporal-ui"]["TEMPORAL_DEFAULT_NAMESPACE"] == namespace
    for name in ("worker", "search-attributes"):
        assert env[name]["MSR_TEMPORAL_NAMESPACE"] == namespace
        assert env[name]["MSR_TEMPORAL_ADDRESS"] == "temporal:7233"
    password = env["temporal-postgres"]["POSTGRES_PASSWORD"]
    assert env["temporal"]["POSTGRES_PWD"] == password
    assert env["temporal-schema"]["SQL_PASSWORD"] == password
    ui, codec = env["temporal-ui"], env["codec"]
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == example["CODEC_PUBLIC_URL"]
    assert ui["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "true"
    assert ui["TEMPORAL_AUTH_ENABLED"] == "true"
    assert ui["TEMPORAL_AUTH_ISSUER_URL"] == codec["MSR_CODEC_OIDC_ISSUER"]
    assert json.loads(codec["MSR_CODEC_UI_ORIGINS"]) == [example["TEMPORAL_UI_PUBLIC_URL"]]
    assert "MSR_CODEC_SERVER_TOKEN" not in codec  # tokens from the identity provider only
    assert env["worker"]["MSR_WORKER_BUILD_ID"] == example["MSR_BUILD_ID"]
    assert services["worker"]["image"].endswith(f":{example['MSR_BUILD_ID']}")
    # The next build: the same worker but for its build id and image, only on request.
    next_build = example["MSR_NEXT_BUILD_ID"]
    assert next_build != example["MSR_BUILD_ID"]
    assert services["worker-next"]["profiles"] == ["next-build"]
    assert "profiles" not in services["worker"]
    assert services["worker-next"]["image"].endswith(f":{next_build}")
    assert env["worker-next"] == {**env["worker"], "MSR_WORKER_BUILD_ID": next_build}
    assert services["worker-next"]["depends_on"] == services["worker"]["depends_on"]


def test_scripts_and_config_files_the_compose_file_mounts_exist() -> None:
    services = _compose()["services"]
    for name in ("temporal-schema", "temporal-namespace"):
        script = services[name]["command"][-1].removeprefix("/scripts/")
        path = ROOT / "deploy/temporal" / script
        assert path.is_file(), path
        assert os.access(path, os.X_OK), path
        subprocess.run(["sh", "-n", str(path)], check=True)
    dynamic = services["temporal"]["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    config = yaml.safe_load((ROOT / "deploy/temporal/dynamicconfig" / Path(dynamic).name)
                            .read_text())
    assert config["system.enableDeploymentVersions"][0]["value"] is True
    for secret in _compose()["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    audit = services["audit-postgres"]
    init = {volume.split(":")[1]: ROOT / volume.split(":")[0]
            for volume in audit["volumes"] if "docker-entrypoint-initdb.d" in volume}
    assert sorted(Path(target).name for target in init) == ["09-role-passwords.sh",
                                                           "10-roles.sh"]
    for path in init.values():
        assert path.is_file(), path
        subprocess.run(["sh", "-n", str(path)], check=True)
    passwords = init["/docker-entrypoint-initdb.d/09-role-passwords.sh"]
    assert not os.access(passwords, os.X_OK), "sourced by the entrypoint, so not executable"
    for variable in re.findall(r"MSR_[A-Z]+_PASSWORD", init[
            "/docker-entrypoint-initdb.d/10-roles.sh"].read_text()):
        assert f"export {variable}" in passwords.read_text() or (
            variable in passwords.read_text().split("export", 1)[1])
    assert "msr_owner_password" in [s if isinstance(s, str) else s["source"]
                                    for s in audit["secrets"]]


def test_make_secrets_is_consistent_and_never_overwrites(tmp_path: Path) -> None:
    secrets = _example_secrets(tmp_path)
    assert set(secrets) == {"audit_db_password", "msr_owner_password", "msr_service_password",
                            "msr_reviewer_password", "msr_database_owner_url",
                            "msr_database_url", "msr_encryption_keys", "msr.toml"}
    passwords = {secrets[f"msr_{role}_password"].read_text()
                 for role in ("owner", "service", "reviewer")}
    passwords.add(secrets["audit_db_password"].read_text())
    assert len(passwords) == 4, "every role has its own password"
    assert all(len(password) >= 24 for password in passwords)
    service = secrets["msr_service_password"].read_text()
    owner = secrets["msr_owner_password"].read_text()
    assert secrets["msr_database_url"].read_text() == (
        f"postgresql://msr_service:{service}@audit-postgres:5432/missed_session")
    assert secrets["msr_database_owner_url"].read_text() == (
        f"postgresql://msr_owner:{owner}@audit-postgres:5432/missed_session")
    keys = json.loads(secrets["msr_encryption_keys"].read_text())
    load_settings(encryption_keys=keys)  # each key decodes to 32 bytes
    assert oct((tmp_path / "secrets").stat().st_mode & 0o777) == "0o700"
    before = {name: path.read_text() for name, path in secrets.items()}
    subprocess.run(["sh", "deploy/make-secrets.sh"], cwd=tmp_path, check=True,
                   capture_output=True)
    assert {name: path.read_text() for name, path in secrets.items()} == before


def test_search_attributes_come_from_the_one_list() -> None:
    """The one-shot registers what the code lists; nothing in the compose file repeats it."""
    command = _compose()["services"]["search-attributes"]["command"]
    assert command == ["python", "-m", "missed_session.provision", "search-attributes"]
    assert not any(key.name in COMPOSE.read_text() for key in SEARCH_ATTRIBUTES)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_pins_its_base_and_runs_as_a_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    bases = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert bases
    for base in bases:
        image = base.split()[0]
        pinned = "@sha256:" in image or re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image)
        assert pinned, f"base image {image} is not pinned to a version"
        assert "slim" in image or "@sha256:" in image
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    assert [keyword for keyword, _ in instructions].index("USER") > max(
        index for index, (keyword, _) in enumerate(instructions) if keyword == "RUN")


def test_dockerfile_puts_no_secret_in_a_layer() -> None:
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|ENCRYPTION_KEYS|DATABASE_URL)", re.I)
    for keyword, rest in _dockerfile_instructions():
        if keyword in {"ENV", "ARG", "LABEL"}:
            assert not secretish.search(rest), f"{keyword} {rest}"
        if keyword in {"COPY", "ADD"}:
            sources = rest.split()[:-1]
            assert not any(s in {".", "./"} or s.startswith((".env", "secrets")) for s in sources)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for must in (".env", "secrets", ".data", ".git", ".venv"):
        assert must in ignored, f".dockerignore must exclude {must}"
    gitignored = (ROOT / ".gitignore").read_text().split()
    assert "secrets/" in gitignored
    assert ".env" in gitignored


def test_dockerfile_installs_exactly_the_lock_file() -> None:
    runs = [rest for keyword, rest in _dockerfile_instructions() if keyword == "RUN"]
    assert any("--require-hashes" in run and "requirements.lock" in run for run in runs)
    pinned: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\]+)", line)
        if match:
            pinned[match[1].lower().replace("_", "-")] = match[2]
    text = LOCK.read_text()
    assert text.count("==") == len(pinned)
    assert text.count("--hash=sha256:") >= len(pinned)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = requirement.name.lower().replace("_", "-").replace(".", "-")
        assert name in pinned, f"{name} is in pyproject.toml but not in requirements.lock"
        assert requirement.specifier.contains(pinned[name]), (name, pinned[name])
