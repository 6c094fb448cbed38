"""API errors: a machine-readable `error` code, a human `message` and the HTTP status they map to."""

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """Raised anywhere in a request; the error middleware answers {"success": false, "error", "message"}."""

    status = 400

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # More fields for the JSON body (the list of invalid fields, say).
        self.details = details
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"success": False, "error": self.code, "message": self.message, **self.details}


class BadRequest(ApiError):
    """The input is malformed: fixing the request (not paying more) is what helps."""

    status = 400


class PaymentRejected(ApiError):
    """The payment does not pay for a mint; the 402 carries PAYMENT-REQUIRED so a client can pay again."""

    status = 402


class PaymentReplayed(ApiError):
    """This payment was already used for a mint (or settled on-chain)."""

    status = 409

    def __init__(self, message: str = "this payment has already been used") -> None:
        super().__init__("payment_replayed", message)


class Unavailable(ApiError):
    """A dependency (RPC node, database) did not answer; the client may retry."""

    status = 503


class RateLimited(ApiError):
    """Too many requests from one client or payer (or too many open streams): retry after the header's
    seconds."""

    status = 429

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(code, message, headers={"Retry-After": str(retry_after)})
