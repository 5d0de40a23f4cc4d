"""How every entry point connects to Temporal, so they agree on the data converter.

Worker, starter, demo and replayer all build their converter here: pydantic models as JSON,
sealed by the encryption codec, so nothing readable about a client reaches the server.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import TLSConfig

from missed_session.codec.encryption import EncryptionCodec, new_key, parse_key
from missed_session.config import Settings

PLAIN_CONVERTER = pydantic_data_converter
"""Without encryption: for reading raw histories in tests, never for sessions."""
EMBEDDED_KEY_FILE = "encryption-keys.json"


def data_converter(codec: EncryptionCodec, meter: MetricMeter | None = None) -> DataConverter:
    """The service's converter: pydantic JSON payloads, then AES-256-GCM.

    Failures too: a failure's message and stack trace are moved into an encoded payload
    (the history keeps only "Encoded failure"), since a provider's error can quote the
    number or address it refused, and a trace can hold anything. Decoding refuses every
    payload not sealed with a known key (`EncryptionCodec.guarding`), counted with `meter`.
    """
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec.guarding(meter),  # only payloads sealed with a known key open
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def codec_for(settings: Settings) -> EncryptionCodec:
    """The configured keys, or (embedded stack only) a key kept under the data directory."""
    keys = dict(settings.encryption_keys) or _embedded_keys(settings.data_dir)
    active = settings.encryption_key_id or next(iter(keys))
    return EncryptionCodec({key_id: parse_key(key_id, key) for key_id, key in keys.items()},
                           active)


def _embedded_keys(data_dir: Path) -> dict[str, str]:
    """Read, or create once with owner-only permissions, the embedded stack's key file."""
    path = data_dir / EMBEDDED_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"embedded-1": new_key()}, file)
    keys: dict[str, str] = json.loads(path.read_text())
    return keys


def tls_config(settings: Settings) -> TLSConfig | bool:
    """The frontend's TLS as configured: False (plain), or the CA, name and client pair.

    Files are read here, once per connection, so a certificate renewed on disk is picked up
    by the next start without a configuration change.
    """
    if not settings.temporal_uses_tls:
        return False

    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path is not None else None

    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_server_ca_cert_path),
        domain=settings.temporal_tls_server_name,
        client_cert=read(settings.temporal_tls_client_cert_path),
        client_private_key=read(settings.temporal_tls_client_key_path),
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client for the configured server and namespace, with the service's converter.

    TLS, mTLS and an API key (Temporal Cloud) come from the settings; an API key is only
    ever sent over TLS (the settings refuse `temporal_tls = false` with one).
    """
    api_key = settings.temporal_api_key
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(codec_for(settings),
                                      runtime.metric_meter if runtime is not None else None),
        runtime=runtime,
        tls=tls_config(settings),
        api_key=api_key.get_secret_value() if api_key is not None else None,
    )


def service_runtime(metrics_port: int | None, metrics_host: str = "127.0.0.1") -> Runtime:
    """A Temporal runtime that serves Prometheus metrics and forwards core logs to Python.

    The SDK core (Rust) logs on its own; forwarding puts its lines through the same
    structlog pipeline, redaction included, as everything else. The metrics endpoint binds
    loopback by default; a container binds all its addresses (`metrics_host`), since only
    the container network reaches them.
    """
    metrics = (
        PrometheusConfig(bind_address=f"{metrics_host}:{metrics_port}") if metrics_port
        else None
    )
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=metrics,
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="WARN"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            ),
        )
    )
