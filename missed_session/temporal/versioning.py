"""Worker Versioning: which build a worker is, and how sessions relate to builds.

Sessions last hours to days; a deploy in the middle of one must not change the code that
replays its history. With a deployment name and build id configured, the worker registers
as that version of the deployment, and sessions it starts are pinned to it by default: they
finish on the build they began on while new sessions go to the build the operator made
current (docs/deployment.md: deploy, ramp, drain, retire). Without them the worker is
unversioned, as in the embedded stack and the tests.
"""

from __future__ import annotations

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

from missed_session.config import Settings

BEHAVIORS = {
    "pinned": VersioningBehavior.PINNED,
    "auto_upgrade": VersioningBehavior.AUTO_UPGRADE,
}


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The worker's deployment version and default behaviour, or None when unversioned."""
    if settings.worker_deployment_name is None or settings.worker_build_id is None:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(
            deployment_name=settings.worker_deployment_name,
            build_id=settings.worker_build_id,
        ),
        use_worker_versioning=True,
        default_versioning_behavior=BEHAVIORS[settings.worker_versioning_behavior],
    )
