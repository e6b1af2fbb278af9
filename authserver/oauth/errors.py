"""OAuth error codes Authlib does not ship, in the shape of its OAuth2Error classes."""

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested resource is invalid, unknown or malformed."""

    error = "invalid_target"
    status_code = 400


class RegistrationClosedError(OAuth2Error):
    """RFC 7591 §3.2.2 leaves the code open; `access_denied` with 403 is the common choice."""

    error = "access_denied"
    status_code = 403


class RepeatedParameterError(InvalidRequestError):
    """RFC 6749 §3.1, §3.2: a parameter sent more than once; `parameter` names it."""

    def __init__(self, parameter: str):
        super().__init__(safe_description(f"Parameter '{parameter}' is repeated."))
        self.parameter = parameter


def safe_description(text: str, limit: int = 200) -> str:
    """Fit text into RFC 6749's error_description alphabet (%x20-21 / %x23-5B / %x5D-7E)."""
    cleaned = "".join(c if (0x20 <= ord(c) <= 0x7E and c not in '"\\') else "?" for c in text)
    return cleaned[:limit]


class RateLimitedError(OAuth2Error):
    """Too many requests for this client or resource server: 429 with Retry-After, and the code
    the route-level limits answer with (`temporarily_unavailable`, RFC 6749 §4.1.2.1)."""

    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__(description="Too many requests; retry after the time in Retry-After.")
        self.retry_after = retry_after

    def get_headers(self):
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]
