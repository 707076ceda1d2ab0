"""Where each region's Cognito calls go: AWS's own regional endpoint, or one configured per
region (a VPC endpoint, a proxy, a local emulator).

botocore's ``AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER`` (or ``AWS_ENDPOINT_URL``) would send
the user pools of every region to one endpoint, each request signed for its own region, and a
regional or VPC endpoint refuses every region but its own. So the worker takes endpoints only
per region, from ``FEEDBACK_COGNITO_ENDPOINTS`` (``region=URL`` pairs; ``*=URL`` for an
endpoint that serves every region), its Cognito clients ignore botocore's overrides, and it
refuses to start on botocore's override alone, saying what to set instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlparse

from worker.awsmodel import cognito_regions
from worker.errors import ConfigError

# In FEEDBACK_COGNITO_ENDPOINTS, the endpoint of every region not named (an emulator's).
ANY_REGION = "*"
# botocore's own endpoint overrides: they send every region's pools to one endpoint.
GLOBAL_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", "AWS_ENDPOINT_URL")

Endpoints = tuple[tuple[str, str], ...]


def endpoint_for(endpoints: Endpoints, region: str) -> str | None:
    """The endpoint configured for `region` (None: AWS's own)."""
    by_region = dict(endpoints)
    return by_region.get(region, by_region.get(ANY_REGION))


def parse_endpoints(text: str) -> Endpoints:
    """``region=URL`` pairs separated by commas; raises ValueError(reason)."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        region, sep, url = (piece.strip() for piece in item.partition("="))
        if not sep or not region or not url:
            raise ValueError(f"must be region=URL pairs separated by commas (got {item!r})")
        if region != ANY_REGION and region not in cognito_regions():
            raise ValueError(f"names {region!r}, which is not a Cognito region")
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"has {url!r} for {region}, which is not an http(s) URL")
        pairs.append((region, url))
    if not pairs:
        raise ValueError("must name at least one region=URL pair")
    return tuple(pairs)


def refuse_one_endpoint_for_every_region(env: Mapping[str, str], *, has_own: bool) -> None:
    """ConfigError when botocore's override is set and no per-region endpoints are given."""
    if has_own:
        return  # ours is explicit per region; the Cognito clients ignore botocore's
    for name in GLOBAL_ENDPOINT_VARIABLES:
        if env.get(name):
            raise ConfigError(
                name,
                "would send the user pools of every region to one endpoint, and a regional "
                "or VPC endpoint refuses requests signed for another region; set "
                "FEEDBACK_COGNITO_ENDPOINTS instead, as region=URL pairs (or '*=URL' for an "
                "endpoint that serves every region, such as a local emulator)",
            )
