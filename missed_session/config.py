"""Service configuration from environment variables and an optional TOML file.

Validated once at start-up so that a typo stops the process with a message naming the
setting, instead of surfacing hours later in the middle of a client's outreach.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from missed_session.codec.encryption import parse_key
from missed_session.domain.messages import ensure_discreet
from missed_session.domain.models import PhoneNumber

CONFIG_FILE_ENV = "MSR_CONFIG_FILE"
SECRETS_DIR_ENV = "MSR_SECRETS_DIR"
"""A directory of one-value files named like the variables (compose secrets: /run/secrets)."""
TASK_QUEUE = "missed-session"
"""The one task queue name; every entry point imports it from here."""
DEFAULT_MAX_CACHED_WORKFLOWS = 1_000
"""The SDK's default: holds a burst of 1,000 sessions starting together (see the setting)."""
DEFAULT_STICKY_SECONDS = 30.0
"""How long a session's next workflow task waits for the worker that has it cached (the
SDK's default is 10 s; see the setting)."""


def _env(temporal_name: str) -> AliasChoices:
    """Our MSR_ name first, then Temporal's own environment configuration name."""
    return AliasChoices(f"MSR_{temporal_name}", temporal_name)


class Settings(BaseSettings):
    """Everything the worker, starter and embedded stack need to know."""

    model_config = SettingsConfigDict(env_prefix="MSR_", extra="forbid", frozen=True,
                                      populate_by_name=True)

    temporal_address: str = Field(default="127.0.0.1:7233",
                                  validation_alias=_env("TEMPORAL_ADDRESS"))
    """Temporal frontend host:port (Temporal Cloud: `<namespace>.<account>.tmprl.cloud:7233`
    with mTLS, or the regional endpoint with an API key)."""
    temporal_namespace: str = Field(default="default",
                                    validation_alias=_env("TEMPORAL_NAMESPACE"))
    """Temporal namespace the sessions live in."""
    temporal_api_key: SecretStr | None = Field(default=None,
                                               validation_alias=_env("TEMPORAL_API_KEY"))
    """API key (Temporal Cloud); sent as a bearer token, over TLS only."""
    temporal_tls: bool | None = Field(default=None, validation_alias=_env("TEMPORAL_TLS"))
    """TLS to the frontend. Unset: on when an API key or a certificate is configured."""
    temporal_tls_client_cert_path: FilePath | None = Field(
        default=None, validation_alias=_env("TEMPORAL_TLS_CLIENT_CERT_PATH"))
    """mTLS client certificate (PEM), with `temporal_tls_client_key_path`."""
    temporal_tls_client_key_path: FilePath | None = Field(
        default=None, validation_alias=_env("TEMPORAL_TLS_CLIENT_KEY_PATH"))
    """mTLS client private key (PEM)."""
    temporal_tls_server_ca_cert_path: FilePath | None = Field(
        default=None, validation_alias=_env("TEMPORAL_TLS_SERVER_CA_CERT_PATH"))
    """CA that signed the frontend's certificate (PEM); unset: the system's roots."""
    temporal_tls_server_name: str | None = Field(
        default=None, validation_alias=_env("TEMPORAL_TLS_SERVER_NAME"))
    """Name expected in the frontend's certificate when it differs from the address's host."""
    worker_deployment_name: str | None = Field(default=None, min_length=1, max_length=255)
    """Worker Versioning: the deployment this worker belongs to (e.g. `missed-session`).
    Unset: unversioned workers (the embedded stack and tests)."""
    worker_build_id: str | None = Field(default=None, min_length=1, max_length=255)
    """Worker Versioning: this build's id (e.g. the image tag or git commit)."""
    worker_versioning_behavior: Literal["pinned", "auto_upgrade"] = "pinned"
    """How sessions relate to builds: `pinned` (a session finishes on the build it started
    on; docs/deployment.md says why this is the default) or `auto_upgrade` (sessions move
    to the current build; every change to the workflow then needs `workflow.patched()`)."""
    task_queue: str = TASK_QUEUE
    """Task queue the worker polls."""
    database_url: str | None = None
    """PostgreSQL URL of the service's role (`msr_service`: SELECT and INSERT on the trail);
    when unset, the embedded PostgreSQL under `data_dir` is used."""
    database_owner_url: str | None = None
    """PostgreSQL URL of the schema owner's role (`msr_owner`), used only to run pending
    migrations at start-up. Unset: the service's URL must be migrated already (or be a
    single role allowed to migrate, as in development)."""
    data_dir: Path = Path(".data")
    """Where the embedded stack keeps PostgreSQL and the Temporal database."""
    ui_port: int = Field(default=8233, ge=1, le=65535)
    """Port of the Temporal Web UI in the embedded stack."""
    dev_server_http_port: int = Field(default=7243, ge=1, le=65535)
    """Port of the embedded Temporal dev server's HTTP API (loopback)."""
    dev_server_metrics_port: int = Field(default=9465, ge=1, le=65535)
    """Port of the embedded Temporal dev server's Prometheus endpoint (loopback)."""
    time_scale: float = Field(default=1.0, ge=1.0, le=3600.0)
    """Compresses protocol durations for demos (60: a minute lasts a second). 1 in production."""
    sender_name: Annotated[str, AfterValidator(ensure_discreet)] = Field(
        default="Alex at the front desk", min_length=1, max_length=60
    )
    """Neutral name outreach introduces itself with; must not reveal a therapy practice.

    Checked here, at start-up, because every voicemail would otherwise refuse it mid-outreach.
    """
    callback_number: PhoneNumber = "+15555550100"
    """The number clients and emergency contacts are asked to call back."""
    practice_file: Path | None = None
    """The practice's protocols (TOML, see docs/protocol.md); each booking is resolved
    against it at intake. Unset: the built-in protocol, or what the booking says."""
    channel: Literal["simulated", "webhook", "twilio"] = "simulated"
    """Who places calls, voicemails and texts (and email, unless SMTP is configured)."""
    webhook_url: str | None = None
    """The practice system's outreach endpoint (channel `webhook`)."""
    webhook_secret: SecretStr | None = None
    """Shared HMAC-SHA256 secret the webhook requests are signed with."""
    twilio_account_sid: str | None = None
    """Twilio account (channel `twilio`)."""
    twilio_auth_token: SecretStr | None = None
    """Twilio auth token."""
    twilio_from_number: PhoneNumber | None = None
    """The Twilio number calls and texts come from."""
    twilio_status_callback_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """The HTTP API's `/inbound/twilio/calls` route as Twilio reaches it (the API's public
    URL): Twilio posts each call's final status there, and the waiting step reads it
    (polling less, and still polling when no callback comes). Unset: polling only."""
    inbound_text_wait_seconds: float = Field(default=3.0, ge=0.1, le=30.0)
    """How long an inbound text waits for its session to take it (a worker must); past that
    it is kept in PostgreSQL, answered 200, and delivered by the API's deliverer."""
    smtp_host: str | None = None
    """SMTP server for outreach email; when set, email goes through it."""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    """SMTP port (587: STARTTLS)."""
    smtp_username: str | None = None
    """SMTP login, if the server needs one."""
    smtp_password: SecretStr | None = None
    """SMTP password."""
    smtp_sender_address: str | None = None
    """The neutral From address of outreach email (required with smtp_host)."""
    notice_link_url: str | None = None
    """Where a clinician's signed acknowledgment link points (the HTTP endpoint that
    verifies it, e.g. `https://notices.example.org/notices/ack`); unset: no links."""
    notice_link_secret: SecretStr | None = None
    """HMAC-SHA256 secret the links are signed with (required with notice_link_url)."""
    encryption_keys: dict[str, str] = Field(default_factory=dict)
    """Key id -> base64 AES-256 key. Every key can decrypt; `encryption_key_id` encrypts.
    Unset with the embedded database: a key is generated under `data_dir`."""
    encryption_key_id: str | None = None
    """Which key encrypts new payloads; optional when only one key is configured."""
    checkpoint_keys: dict[str, str] = Field(default_factory=dict)
    """Key id -> base64 HMAC key (32 bytes or more) that audit checkpoints are signed with;
    held by the service, never by PostgreSQL. Every key verifies; `checkpoint_key_id`
    signs. Unset with the embedded database: a key is generated under `data_dir`; unset
    with an external one: no checkpoints are written (`audit verify` says so)."""
    checkpoint_key_id: str | None = None
    """Which checkpoint key signs; optional when only one is configured."""
    checkpoint_interval_seconds: int = Field(default=60, ge=1, le=3600)
    """How often the worker checkpoints the sessions whose trails grew."""
    checkpoint_head_file: Path | None = None
    """Append-only file outside PostgreSQL where the checkpointer writes the checkpoint log's
    head after each round, and `audit verify --all` reads it back. Unset: `checkpoint-heads`
    beside the checkpoint key in `data_dir`. Production: a path on write-once storage
    (docs/security.md)."""
    codec_server_port: int = Field(default=8234, ge=1, le=65535)
    """Port of the codec server the Web UI decrypts through (bound to loopback)."""
    codec_server_token: SecretStr | None = None
    """Bearer token for programmatic callers of the codec server."""
    codec_server_host: str = "127.0.0.1"
    """Where the stand-alone codec server (`python -m missed_session.codec.service`) listens;
    `0.0.0.0` in a container, behind the deployment's TLS proxy."""
    codec_ui_origins: list[str] = Field(default_factory=list)
    """Origins of the Web UI that browsers call the stand-alone codec server from (CORS
    only: authorisation is the access token, never the Origin header)."""
    codec_oidc_issuer: str | None = None
    """OIDC issuer whose access tokens the stand-alone codec server accepts (the `iss`)."""
    codec_oidc_audience: str | None = None
    """Audience those tokens must name (`aud`): the API the Web UI's login asks a token for."""
    codec_oidc_jwks_url: str | None = None
    """The issuer's signing keys; unset: from its `/.well-known/openid-configuration`."""
    codec_server_ui_secret: SecretStr | None = None
    """The secret in the Web UI's codec endpoint (`/ui/<secret>`), entered in the browser's
    Codec Server settings. Unset in the embedded stack: created in `data_dir`."""
    max_cached_workflows: int = Field(default=DEFAULT_MAX_CACHED_WORKFLOWS, ge=0)
    """Session workflows the worker keeps in memory between their steps (about 0.13 MB
    each). It should hold every session active at the same moment (a burst starting
    together); one evicted from the cache replays its history at its next step. 0 disables
    the cache: every step replays."""
    sticky_seconds: float = Field(default=DEFAULT_STICKY_SECONDS, gt=0, le=600)
    """How long a session's next workflow task waits in the queue of the worker that holds
    the session in its cache before the server gives it to any worker (Temporal's sticky
    queue schedule-to-start timeout; the SDK's default is 10 s). A burst of no-shows keeps a
    worker's queue busy for longer than 10 s: a task that times out there goes to the back of
    the task queue and waits a second round (docs/performance.md measured 32 s against 14 s
    at the p99 of a 1,000-session burst). The cost of a longer wait: a task queued for a
    worker that was killed waits this long for another (new tasks go elsewhere as soon as
    the server has seen no poll from it for 10 s)."""
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    """Prometheus endpoint of the worker (`/metrics`); 0 turns it off. Two workers on one
    host (outside containers) need different ports, or 0."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics endpoint binds; `0.0.0.0` in a container so that Prometheus on
    the container network can scrape each replica (no host port is published)."""
    audit_retention_years: int = Field(default=6, ge=6, le=100)
    """How long audit trails are kept from their creation before `audit purge` may delete
    them; never below 6 (the HIPAA documentation period, also enforced by the database)."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """`auto`: console in a terminal, JSON otherwise."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level that is logged."""

    @model_validator(mode="after")
    def _temporal_connection_is_complete(self) -> Settings:
        if (self.temporal_tls_client_cert_path is None) != (
            self.temporal_tls_client_key_path is None
        ):
            msg = ("temporal_tls_client_cert_path and temporal_tls_client_key_path go together"
                   " (mTLS needs the certificate and its key)")
            raise ValueError(msg)
        wants_tls = (self.temporal_api_key is not None
                     or self.temporal_tls_client_cert_path is not None
                     or self.temporal_tls_server_ca_cert_path is not None)
        if self.temporal_tls is False and wants_tls:
            msg = ("temporal_tls is false, but an API key or TLS certificate is configured:"
                   " they are only ever sent over TLS")
            raise ValueError(msg)
        if (self.worker_deployment_name is None) != (self.worker_build_id is None):
            msg = "worker_deployment_name and worker_build_id go together (Worker Versioning)"
            raise ValueError(msg)
        if (self.codec_oidc_issuer is None) != (self.codec_oidc_audience is None):
            msg = "codec_oidc_issuer and codec_oidc_audience go together"
            raise ValueError(msg)
        return self

    @property
    def temporal_uses_tls(self) -> bool:
        """TLS unless switched off; on by default once a key or certificate is configured."""
        if self.temporal_tls is not None:
            return self.temporal_tls
        return (self.temporal_api_key is not None
                or self.temporal_tls_client_cert_path is not None
                or self.temporal_tls_server_ca_cert_path is not None)

    @model_validator(mode="after")
    def _channel_is_complete(self) -> Settings:
        required = {
            "webhook": ("webhook_url", "webhook_secret"),
            "twilio": ("twilio_account_sid", "twilio_auth_token", "twilio_from_number"),
        }.get(self.channel, ())
        if self.smtp_host:
            required = (*required, "smtp_sender_address")
        if self.notice_link_url:
            required = (*required, "notice_link_secret")
        for name in required:
            if getattr(self, name) is None:
                what = ("smtp_host" if name.startswith("smtp") else "notice_link_url"
                        if name.startswith("notice") else f"channel {self.channel!r}")
                msg = f"{name} is required with {what}"
                raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _keys_are_usable(self) -> Settings:
        for key_id, encoded in self.encryption_keys.items():
            parse_key(key_id, encoded)
        active = self.encryption_key_id
        if active is not None and active not in self.encryption_keys:
            msg = f"encryption_key_id {self.encryption_key_id!r} is not in encryption_keys"
            raise ValueError(msg)
        if self.encryption_key_id is None and len(self.encryption_keys) > 1:
            msg = "encryption_key_id must name the active key when several keys are configured"
            raise ValueError(msg)
        checkpoint_active = self.checkpoint_key_id
        if checkpoint_active is not None and checkpoint_active not in self.checkpoint_keys:
            msg = f"checkpoint_key_id {checkpoint_active!r} is not in checkpoint_keys"
            raise ValueError(msg)
        if checkpoint_active is None and len(self.checkpoint_keys) > 1:
            msg = "checkpoint_key_id must name the active key when several keys are configured"
            raise ValueError(msg)
        if self.database_url and not self.encryption_keys:
            msg = (
                "encryption_keys is required with an external database_url: generate one with "
                "`python starter.py new-key`"
            )
            raise ValueError(msg)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment, then secret files (`MSR_SECRETS_DIR`), then the file, then defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get(SECRETS_DIR_ENV)
        if secrets_dir:
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


class ConfigurationError(RuntimeError):
    """The configuration cannot be used; the message names the setting."""


def load_settings(**overrides: object) -> Settings:
    """Load and validate the settings, naming the first bad one in the error."""
    config_file = os.environ.get(CONFIG_FILE_ENV)
    if config_file and not Path(config_file).is_file():
        msg = f"{CONFIG_FILE_ENV}: no such file {config_file!r}"
        raise ConfigurationError(msg)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        problem = first["msg"].removeprefix("Value error, ")
        name = ".".join(str(part) for part in first["loc"])
        # Cross-field rules have no location; their message starts with the setting's name.
        msg = f"setting {name}: {problem}" if name else f"setting {problem}"
        raise ConfigurationError(msg) from None
