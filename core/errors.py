"""One error tree for the whole gateway.

Every failure the gateway reports is a `GatewayError`. Each subclass carries its HTTP
`status_code`, a stable machine `code`, an OpenAI-style error `type` and whether a router may
`retryable`-ly try another target, all as class attributes. Ingress adapters alone turn these into
their protocol's error shape; nothing derives a status from message text.

    GatewayError
    ├── BadRequest                 400  invalid_request_error
    │   ├── InvalidJSON            400  the body is not JSON
    │   ├── UnsupportedContent     400  a part or field the gateway cannot carry
    │   └── ContentBlocked         400  a filter rejected the content
    ├── ValidationFailed           422  JSON that does not match the schema
    ├── AuthenticationFailed       401  missing, unknown, expired or revoked key
    ├── PermissionDenied           403  outside the key's scopes
    ├── NotFound                   404  unknown model, route or object
    ├── Conflict                   409  a duplicate name, or an object changed meanwhile
    ├── PayloadTooLarge            413
    ├── UnsupportedMediaType       415  a Content-Type the endpoint does not read
    ├── RateLimited                429  a limit of ours; carries retry_after
    │   └── AuthThrottled          429  too many failed authentications from one address
    ├── QuotaExceeded              429  a budget of ours is spent
    ├── FilterUnavailable          503  a protecting filter failed (fail closed)
    ├── Internal                   500
    └── UpstreamError              502  retryable: the provider failed
        ├── UpstreamUnavailable    503  retryable: connection refused or reset
        ├── UpstreamTimeout        504  retryable
        ├── UpstreamRateLimited    429  retryable: the provider said 429
        ├── UpstreamRejected       4xx  not retryable: the provider refused the request itself
        └── AllTargetsFailed       502/503  every candidate failed; carries each attempt
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    type: ClassVar[str] = "server_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def status(self) -> int:
        """The HTTP status for this instance (a few errors carry the upstream's)."""
        return self.status_code

    def headers(self) -> dict[str, str]:
        """Extra response headers this error asks for (such as `Retry-After`)."""
        return {}


class BadRequest(GatewayError):
    status_code = 400
    code = "invalid_request"
    type = "invalid_request_error"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class UnsupportedContent(BadRequest):
    code = "unsupported_content"


class ContentBlocked(BadRequest):
    code = "content_blocked"


class ValidationFailed(GatewayError):
    status_code = 422
    code = "invalid_request"
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status_code = 401
    code = "invalid_api_key"
    type = "authentication_error"


class PermissionDenied(GatewayError):
    status_code = 403
    code = "permission_denied"
    type = "permission_error"


class NotFound(GatewayError):
    status_code = 404
    code = "not_found"
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(GatewayError):
    """The change collides with what is stored (a duplicate name, a concurrent edit)."""

    status_code = 409
    code = "conflict"
    type = "invalid_request_error"


class PayloadTooLarge(GatewayError):
    status_code = 413
    code = "payload_too_large"
    type = "invalid_request_error"


class UnsupportedMediaType(GatewayError):
    """The body's Content-Type is not one the endpoint reads (a form sent to a JSON endpoint)."""

    status_code = 415
    code = "unsupported_media_type"
    type = "invalid_request_error"


class RateLimited(GatewayError):
    status_code = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float = 1.0, param: str | None = None):
        super().__init__(message, param=param)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class AuthThrottled(RateLimited):
    """Refused before the key is even looked at: this address failed too often."""

    code = "too_many_failed_authentications"


class QuotaExceeded(RateLimited):
    code = "insufficient_quota"
    type = "insufficient_quota"


class FilterUnavailable(GatewayError):
    status_code = 503
    code = "filter_unavailable"
    type = "server_error"


class GovernanceUnavailable(GatewayError):
    """Limits and budgets cannot be checked (the counter store is down) and the policy is closed."""

    status_code = 503
    code = "governance_unavailable"
    type = "server_error"


class Internal(GatewayError):
    pass


class UpstreamError(GatewayError):
    status_code = 502
    code = "upstream_error"
    type = "api_error"
    retryable = True


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamRateLimited(UpstreamError):
    status_code = 429
    code = "upstream_rate_limited"
    type = "rate_limit_error"


class UpstreamRejected(UpstreamError):
    """The provider refused the request itself (a 4xx other than 429): retrying cannot help."""

    status_code = 400
    code = "upstream_rejected"
    type = "invalid_request_error"
    retryable = False

    def __init__(self, message: str, *, upstream_status: int, param: str | None = None):
        super().__init__(message, param=param)
        self.upstream_status = upstream_status

    @property
    def status(self) -> int:
        return self.upstream_status


class AllTargetsFailed(UpstreamError):
    """Every candidate target failed; `attempts` holds each attempt's error in order."""

    code = "all_targets_failed"
    retryable = False

    def __init__(self, message: str, attempts: Sequence[GatewayError]):
        super().__init__(message)
        self.attempts = tuple(attempts)

    @property
    def status(self) -> int:
        # Nothing answered at all: the service is unavailable; otherwise a bad gateway.
        if self.attempts and all(isinstance(a, UpstreamUnavailable) for a in self.attempts):
            return UpstreamUnavailable.status_code
        if self.attempts and all(isinstance(a, UpstreamTimeout) for a in self.attempts):
            return UpstreamTimeout.status_code
        return self.status_code
