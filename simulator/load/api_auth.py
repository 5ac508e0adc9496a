"""Credentials the read side sends to a deployed API behind the load balancer's OIDC.

A deployed ``tap api`` sits behind an internal Application Load Balancer that
authenticates every request with the plant's identity provider (``authenticate-oidc``,
lib/components/api_load_balancer.py). A browser holds the balancer's session cookie
(``AWSELBAuthSessionCookie-0``, and ``-1``... when it is split); Locust's read users,
the anomaly stream listeners and ``tap load``'s pre-flight have no browser, so they
send what the operator hands them in the environment:

``TAP_API_SESSION_COOKIE``  the ``Cookie`` header value of an authenticated browser
                            session, ``name=value`` pairs joined by ``; `` (copy it
                            from the browser's developer tools after logging in to
                            the board). This is what an ``authenticate-oidc`` listener
                            accepts.
``TAP_API_BEARER_TOKEN``    an access token sent as ``Authorization: Bearer <token>``,
                            for a front that verifies tokens (a JWT-verifying
                            listener rule or a proxy); the ``authenticate-oidc``
                            action itself does not accept bearer tokens.

Both may be set; neither is needed locally. Values are secrets: they live in the
environment only (never on a command line or in a report), and an error names the
variable, never its value. A malformed value (a line break, a space inside a token,
a cookie that is not ``name=value``) is refused before any request is made, so a
campaign cannot run for minutes collecting 302s to the identity provider.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

COOKIE_ENV: Final = "TAP_API_SESSION_COOKIE"
BEARER_ENV: Final = "TAP_API_BEARER_TOKEN"

# RFC 6750 section 2.1 (b64token).
_BEARER: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 6265 section 4.1.1: cookie-name is an HTTP token, cookie-value cookie-octets
# (no whitespace, DQUOTE, comma, semicolon or backslash), optionally in DQUOTEs.
_COOKIE_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OCTETS: Final = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_COOKIE_VALUE: Final = re.compile(f'{_OCTETS}|"{_OCTETS}"')


class ApiAuthError(ValueError):
    """A credential variable is malformed; the message names it (not its value)."""


def auth_headers(environ: Mapping[str, str]) -> dict[str, str]:
    """The HTTP headers every request to the API carries (empty when none is set)."""
    headers: dict[str, str] = {}
    cookie = environ.get(COOKIE_ENV, "").strip()
    if cookie:
        headers["Cookie"] = _checked_cookie(cookie)
    token = environ.get(BEARER_ENV, "").strip()
    if token:
        token = token.removeprefix("Bearer ").strip()
        if not _BEARER.fullmatch(token):
            raise ApiAuthError(
                f"{BEARER_ENV} is not a bearer token (RFC 6750: letters, digits and"
                " -._~+/ then optional '=' padding; no spaces or line breaks)"
            )
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _checked_cookie(value: str) -> str:
    pairs = [p.strip() for p in value.split(";")]
    for index, pair in enumerate(pairs, start=1):
        name, sep, cookie_value = pair.partition("=")
        if not sep or not _COOKIE_NAME.fullmatch(name):
            raise ApiAuthError(
                f"{COOKIE_ENV}: pair {index} is not name=value (expected e.g."
                " 'AWSELBAuthSessionCookie-0=...; AWSELBAuthSessionCookie-1=...')"
            )
        if not _COOKIE_VALUE.fullmatch(cookie_value):
            raise ApiAuthError(
                f"{COOKIE_ENV}: the value of cookie {name!r} has characters a cookie"
                " cannot carry (spaces, commas, quotes, backslashes or line breaks)"
            )
    return "; ".join(pairs)
