"""Connecting to a TLS-only Temporal endpoint, and Worker Versioning, against the dev server.

The dev server speaks plain gRPC; `tls_support.tls_terminator` puts a TLS endpoint that
demands a client certificate (mTLS, like Temporal Cloud) in front of it, with a CA made for
the test. The service connects only through `temporal.client.connect(settings)`, so what
is checked here is the configuration path a deployment uses.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import VersioningBehavior as VersioningBehaviorProto
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from missed_session.config import ConfigurationError, Settings, load_settings
from missed_session.temporal.client import connect
from missed_session.temporal.versioning import deployment_config
from tests.support.servers import TEST_KEYS, installed_binary
from tests.support.tls import Pki, make_pki, tls_terminator


@workflow.defn(name="TlsPing")
class Ping:
    """The smallest workflow a worker can run: proves it polls through the endpoint."""

    @workflow.run
    async def run(self) -> str:
        return "pong"


@pytest.fixture(autouse=True)
def no_temporal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporal's own TEMPORAL_* variables would otherwise reach the settings."""
    for name in list(os.environ):
        if name.startswith(("TEMPORAL_", "MSR_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"),
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls_port(dev_server: WorkflowEnvironment, pki: Pki) -> AsyncIterator[int]:
    backend = int(dev_server.client.service_client.config.target_host.rsplit(":", 1)[1])
    async with tls_terminator(pki, backend) as port:
        yield port


def _settings(port: int, **values: object) -> Settings:
    return load_settings(temporal_address=f"127.0.0.1:{port}", encryption_keys=TEST_KEYS,
                         **values)


async def test_worker_runs_a_workflow_through_a_tls_only_endpoint_with_mtls(
    tls_port: int, pki: Pki
) -> None:
    settings = _settings(
        tls_port,
        temporal_tls_server_ca_cert_path=pki.ca_cert,
        temporal_tls_client_cert_path=pki.client_cert,
        temporal_tls_client_key_path=pki.client_key,
        temporal_tls_server_name="localhost",
    )
    client = await connect(settings)
    task_queue = f"tls-{uuid.uuid4().hex}"
    async with Worker(client, task_queue=task_queue, workflows=[Ping],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        result = await client.execute_workflow(Ping.run, id=f"tls-{uuid.uuid4().hex}",
                                               task_queue=task_queue)
    assert result == "pong"


async def test_tls_endpoint_refuses_a_client_without_certificate(tls_port: int,
                                                                  pki: Pki) -> None:
    settings = _settings(tls_port, temporal_tls_server_ca_cert_path=pki.ca_cert)
    with pytest.raises(RuntimeError, match="Failed client connect"):
        await asyncio.wait_for(connect(settings), timeout=30)


async def test_client_refuses_a_server_signed_by_another_ca(tls_port: int, pki: Pki,
                                                            tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", ca_name="other-ca")
    settings = _settings(tls_port, temporal_tls_server_ca_cert_path=other.ca_cert,
                         temporal_tls_client_cert_path=pki.client_cert,
                         temporal_tls_client_key_path=pki.client_key)
    with pytest.raises(RuntimeError, match="UnknownIssuer"):
        await asyncio.wait_for(connect(settings), timeout=30)


async def test_plain_grpc_does_not_get_through_a_tls_only_endpoint(tls_port: int) -> None:
    with pytest.raises(RuntimeError, match="Failed client connect"):
        await asyncio.wait_for(connect(_settings(tls_port)), timeout=30)


def test_temporal_environment_names_configure_the_connection(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "ns.acct.tmprl.cloud:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "ns.acct")
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(pki.client_cert))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(pki.client_key))
    settings = load_settings()
    assert settings.temporal_address == "ns.acct.tmprl.cloud:7233"
    assert settings.temporal_namespace == "ns.acct"
    assert settings.temporal_uses_tls
    monkeypatch.setenv("MSR_TEMPORAL_ADDRESS", "other:7233")
    assert load_settings().temporal_address == "other:7233"  # our own name wins


def test_an_api_key_is_never_sent_in_plaintext() -> None:
    assert load_settings(temporal_api_key="k").temporal_uses_tls
    with pytest.raises(ConfigurationError, match="temporal_tls is false"):
        load_settings(temporal_api_key="k", temporal_tls=False)


def test_a_client_certificate_needs_its_key(pki: Pki) -> None:
    with pytest.raises(ConfigurationError, match="go together"):
        load_settings(temporal_tls_client_cert_path=pki.client_cert)
    with pytest.raises(ConfigurationError, match="temporal_tls_client_key_path"):
        load_settings(temporal_tls_client_cert_path=pki.client_cert,
                      temporal_tls_client_key_path="/nonexistent/key.pem")


async def _wait_for_deployment(client: Client, name: str) -> None:
    for _ in range(100):
        try:
            await client.workflow_service.describe_worker_deployment(
                DescribeWorkerDeploymentRequest(namespace=client.namespace,
                                                deployment_name=name))
        except RPCError:
            await asyncio.sleep(0.1)
        else:
            return
    pytest.fail(f"worker deployment {name} never appeared")


async def test_sessions_are_pinned_to_the_build_they_started_on(
    dev_server: WorkflowEnvironment,
) -> None:
    client = dev_server.client
    name = f"msr-{uuid.uuid4().hex[:8]}"
    settings = load_settings(worker_deployment_name=name, worker_build_id="build-1")
    config = deployment_config(settings)
    assert config is not None
    task_queue = f"versioned-{uuid.uuid4().hex}"
    async with Worker(client, task_queue=task_queue, workflows=[Ping],
                      workflow_runner=UnsandboxedWorkflowRunner(), deployment_config=config):
        await _wait_for_deployment(client, name)
        await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace, deployment_name=name, build_id="build-1",
                ignore_missing_task_queues=True))
        handle = await client.start_workflow(Ping.run, id=f"v-{uuid.uuid4().hex}",
                                             task_queue=task_queue)
        assert await handle.result() == "pong"
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    assert info.behavior == VersioningBehaviorProto.VERSIONING_BEHAVIOR_PINNED
    assert info.deployment_version.build_id == "build-1"
    assert info.deployment_version.deployment_name == name
    # How docs/deployment.md finds a build's sessions (to watch it drain).
    query = f'TemporalWorkerDeploymentVersion="{name}:build-1"'
    for _ in range(50):
        if (await client.count_workflows(query)).count == 1:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"{query} found nothing")


def test_unversioned_without_deployment_settings() -> None:
    assert deployment_config(load_settings()) is None
    with pytest.raises(ConfigurationError, match="worker_build_id go together"):
        load_settings(worker_deployment_name="msr")
