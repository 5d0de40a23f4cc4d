"""Settings of the standards intake, from `MSR_INTAKE_*` environment variables.

Kept apart from the service's Settings so that a practice that connects no FHIR, HL7 or
webhook scheduler configures nothing, and so each secret is named for the one sender that
signs with it.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from missed_session.domain.models import TimeZoneName
from missed_session.intake.fields import IntakeDefaults


class NonProduction(StrEnum):
    """What the listener does with an HL7 message marked training or debugging (MSH-11)."""

    REFUSE = "refuse"
    """AR with error 202 (unsupported processing id); nothing done."""
    DRY_RUN = "dry_run"
    """Read and checked as a real one would be; answered with what it would do; nothing
    done and nothing recorded."""


class IntakeSettings(BaseSettings):
    """What the FHIR, HL7, Cal.com and Calendly intake needs to know."""

    model_config = SettingsConfigDict(env_prefix="MSR_INTAKE_", extra="forbid", frozen=True)

    time_zone: TimeZoneName | None = None
    """The practice's IANA time zone: assumed for clients when a message names none (FHIR,
    HL7), and for HL7 times written without an offset."""
    country_code: str | None = Field(default=None, pattern=r"^[1-9]\d{0,2}$")
    """Calling code for phone numbers written without one (e.g. 1)."""
    pseudonym_key: SecretStr = SecretStr("")
    """Key of the keyed hash that turns a Cal.com/Calendly email into a client ref."""
    therapists: dict[str, str] = Field(default_factory=dict)
    """Scheduler user -> therapist id (JSON), e.g. {"Practitioner/17": "t-ana"}."""
    calcom_secret: SecretStr | None = None
    """The Cal.com webhook's secret (X-Cal-Signature-256); unset refuses Cal.com calls."""
    calendly_signing_key: SecretStr | None = None
    """The Calendly subscription's signing key; unset refuses Calendly calls."""
    calendly_tolerance_seconds: int = Field(default=180, ge=1, le=3600)
    """How far a Calendly signature's timestamp may be from the clock."""
    fhir_base_url: str | None = None
    """The sender's FHIR base, for fetching id-only notifications' Appointments."""
    fhir_authorization: SecretStr | None = None
    """The Authorization header value for that FHIR server (e.g. `Bearer ...`)."""
    fhir_client_id: str | None = None
    """This service's client id at that FHIR server (SMART Backend Services); with
    `fhir_private_key` it replaces `fhir_authorization`."""
    fhir_private_key: SecretStr | None = None
    """The PEM private key (RSA or EC P-384) the client assertions are signed with."""
    fhir_key_id: str | None = None
    """The key's `kid` in the JWK set registered with the FHIR server."""
    fhir_token_url: str | None = None
    """The token endpoint; unset: read from `<base>/.well-known/smart-configuration`."""
    fhir_subscription_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    """Subscription (its reference or id) -> the secret its rest-hook notifications are
    signed with (`X-Hub-Signature`: HMAC-SHA256 of the body)."""
    mllp_host: str = "127.0.0.1"
    """Where the MLLP listener binds."""
    mllp_port: int = Field(default=2575, ge=0, le=65535)
    """The MLLP listener's port (0 picks a free one)."""
    max_message_bytes: int = Field(default=1_000_000, ge=1_000, le=20_000_000)
    """Largest message accepted over MLLP or HTTP."""
    future_skew_seconds: int = Field(default=300, ge=0, le=86_400)
    """How far ahead of this service's clock a sender's timestamp (MSH-7, lastUpdated,
    createdAt) may be; a message dated further ahead is refused naming the timestamp."""
    mllp_frame_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How long one MLLP frame may take to arrive once it has begun; then the sender is
    answered AR (when its header could be read) and the connection closed."""
    hl7_non_production: NonProduction = NonProduction.REFUSE
    """HL7 messages with MSH-11 processing id T (training) or D (debugging): refused, or
    dry-run (checked and answered, nothing started)."""

    def defaults(self) -> IntakeDefaults:
        """The translators' view of these settings."""
        key = self.pseudonym_key.get_secret_value()
        if not key and self.calcom_secret is not None:
            key = self.calcom_secret.get_secret_value()
        return IntakeDefaults(time_zone=self.time_zone, country_code=self.country_code,
                              pseudonym_key=key.encode(), therapists=dict(self.therapists))

    @property
    def future_skew(self) -> timedelta:
        """The allowed sender clock lead as a duration."""
        return timedelta(seconds=self.future_skew_seconds)

    @property
    def calendly_tolerance(self) -> timedelta:
        """The tolerance as a duration."""
        return timedelta(seconds=self.calendly_tolerance_seconds)
