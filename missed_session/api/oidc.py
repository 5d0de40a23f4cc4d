"""A clinician's OIDC access token as their API credential.

Where the practice signs its staff in with an identity provider, a clinician's client (a
script, an integration acting for them) may send their access token instead of an API
token. It is checked like the codec server's (`codec.auth.OidcTokenValidator`: the issuer's
published keys, asymmetric algorithms only, the configured issuer and audience, not
expired), and its subject must be mapped to a roster clinician (`MSR_API_OIDC_SUBJECTS`);
any other token is not a credential here (401). The decision records
`oidc:<subject>@<issuer>`.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from missed_session.api.errors import ApiError
from missed_session.api.tokens import AuthMethod, Identity, Scope, authenticated_by
from missed_session.codec.auth import (
    OidcSettings,
    OidcTokenValidator,
    ProviderUnavailableError,
    TokenRefusedError,
)

log = structlog.get_logger(__name__)


class OidcClinicians:
    """Identifies a clinician by an OIDC access token whose subject is mapped to them."""

    def __init__(self, settings: OidcSettings, subjects: Mapping[str, str]) -> None:
        self._validator = OidcTokenValidator(settings)
        self._subjects = dict(subjects)

    async def __call__(self, credential: str) -> Identity | None:
        """The clinician the token's subject maps to; None for anything else."""
        if credential.count(".") != 2:  # not a JWT: an unknown API token
            return None
        try:
            claims = await self._validator.validate(credential)
        except TokenRefusedError as refused:
            log.info("api_oidc_token_refused", reason=str(refused))
            return None
        except ProviderUnavailableError as error:
            log.warning("api_oidc_provider_unavailable", error_type=type(error).__name__)
            raise ApiError(503, "unavailable", "the identity provider cannot be reached; "
                           "try again") from None
        subject = str(claims["sub"])
        clinician_id = self._subjects.get(subject)
        if clinician_id is None:
            log.info("api_oidc_token_refused", reason="subject not mapped to a clinician")
            return None
        reference = authenticated_by(AuthMethod.OIDC, f"{subject}@{claims['iss']}")
        return Identity(Scope.CLINICIAN, reference[:200], clinician_id)
