"""Server-side SigV4 check: parse the Authorization header, recompute the signature with
botocore's own signer from the known secret (a long-term key's, or a session's once its token
checks out), and answer with the errors AWS uses."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from feedback_local.emulator_credentials import (
    ACCOUNT_ID,
    INVALID_TOKEN_MESSAGE,
    TASK_ROLE,
    SessionIssuer,
)
from feedback_local.emulator_wire import (
    INCOMPLETE_SIGNATURE,
    INVALID_SIGNATURE,
    MISSING_AUTH_TOKEN,
    UNRECOGNIZED_CLIENT,
    ApiError,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "cognito-idp"
SCOPE_TERMINATOR = "aws4_request"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)  # what AWS tolerates before "Signature expired"

_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True)
class Caller:
    """Who signed a request, and for which region."""

    access_key: str
    region: str
    session: bool = False

    @property
    def arn(self) -> str:
        """The principal as IAM names it in an AccessDenied message."""
        if self.session:
            return f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{TASK_ROLE}/{self.access_key}"
        return f"arn:aws:iam::{ACCOUNT_ID}:user/{self.access_key}"


@dataclass(frozen=True)
class _Authorization:
    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def _parse_authorization(header: str) -> _Authorization:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ApiError(INCOMPLETE_SIGNATURE, f"Unsupported authorization algorithm: {algorithm}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields[key] = value
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in fields]
    if missing:
        raise ApiError(
            INCOMPLETE_SIGNATURE,
            " ".join(f"Authorization header requires '{k}' parameter." for k in missing),
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != SCOPE_TERMINATOR or not all(scope):
        raise ApiError(
            INCOMPLETE_SIGNATURE,
            f"Credential should be scoped to a valid region, service and {SCOPE_TERMINATOR}.",
        )
    return _Authorization(
        access_key=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=tuple(h.strip().lower() for h in fields["SignedHeaders"].split(";")),
        signature=fields["Signature"],
    )


def _check_date(amz_date: str | None, scope_date: str, now: dt.datetime) -> None:
    if not amz_date:
        raise ApiError(
            INCOMPLETE_SIGNATURE,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    try:
        signed_at = dt.datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ApiError(INCOMPLETE_SIGNATURE, f"Invalid X-Amz-Date: {amz_date}") from None
    if amz_date[:8] != scope_date:
        raise ApiError(
            INVALID_SIGNATURE,
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        raise ApiError(
            INVALID_SIGNATURE,
            f"Signature expired: {amz_date} is now earlier than "
            f"{(now - MAX_CLOCK_SKEW).strftime(AMZ_DATE_FORMAT)} "
            f"({now.strftime(AMZ_DATE_FORMAT)} - 15 min.)",
        )


def _expected_signature(
    auth: _Authorization,
    secret: str,
    amz_date: str,
    method: str,
    url: str,
    headers: Mapping[str, Iterable[str]],
    body: bytes,
) -> str:
    # The rebuilt request holds exactly the headers the client says it signed.
    request = AWSRequest(method=method, url=url, data=body)
    for name in auth.signed_headers:
        for value in headers.get(name, ()):
            request.headers[name] = value  # HTTPHeaders appends repeated names
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(auth.access_key, secret), auth.service, auth.region)
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


def _secret(
    auth: _Authorization,
    headers: Mapping[str, Iterable[str]],
    known_keys: Mapping[str, str],
    sessions: SessionIssuer,
    now: dt.datetime,
    foreign_sessions: Mapping[str, str],
) -> tuple[str, bool]:
    """The secret to check the signature with, and whether it belongs to a session."""
    token = next(iter(headers.get("x-amz-security-token", ())), None)
    if token is not None:
        if auth.access_key in foreign_sessions:
            return foreign_sessions[auth.access_key], True
        if auth.access_key in known_keys:  # a long-term key never comes with a token
            raise ApiError(UNRECOGNIZED_CLIENT, INVALID_TOKEN_MESSAGE)
        return sessions.secret_for(auth.access_key, token, now.timestamp()), True
    secret = known_keys.get(auth.access_key)
    if secret is None:
        raise ApiError(UNRECOGNIZED_CLIENT, INVALID_TOKEN_MESSAGE)
    return secret, False


def _check_scope(auth: _Authorization, bound_region: str | None) -> None:
    if auth.service != SERVICE:
        raise ApiError(
            INVALID_SIGNATURE, f"Credential should be scoped to correct service: '{SERVICE}'."
        )
    if bound_region is not None and auth.region != bound_region:
        # What a regional endpoint answers a request signed for another region.
        raise ApiError(
            INVALID_SIGNATURE,
            f"Credential should be scoped to a valid region, not '{auth.region}'.",
        )
    if "host" not in auth.signed_headers:
        raise ApiError(
            INVALID_SIGNATURE,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )


def authenticate(
    *,
    method: str,
    url: str,
    headers: Mapping[str, Iterable[str]],
    body: bytes,
    known_keys: Mapping[str, str],
    sessions: SessionIssuer,
    bound_region: str | None = None,
    now: dt.datetime | None = None,
    foreign_sessions: Mapping[str, str] | None = None,
) -> Caller:
    """Check a request's SigV4 signature, or raise the ApiError AWS would send.

    `headers` maps lower-case header names to all their values; `url` is the URL the client
    addressed (scheme, Host header, raw path and query). With `bound_region` set, a request
    signed for any other region is refused, as a regional endpoint refuses it.
    """
    authorization = next(iter(headers.get("authorization", ())), None)
    if authorization is None:
        raise ApiError(MISSING_AUTH_TOKEN, "Missing Authentication Token")
    auth = _parse_authorization(authorization)
    _check_scope(auth, bound_region)
    amz_date = next(iter(headers.get("x-amz-date", ())), None)
    now = now or dt.datetime.now(dt.UTC)
    _check_date(amz_date, auth.date, now)
    assert amz_date is not None
    secret, session = _secret(auth, headers, known_keys, sessions, now, foreign_sessions or {})
    expected = _expected_signature(auth, secret, amz_date, method, url, headers, body)
    if not hmac.compare_digest(expected, auth.signature):
        raise ApiError(INVALID_SIGNATURE, _MISMATCH)
    return Caller(access_key=auth.access_key, region=auth.region, session=session)
