"""The read side's credentials for a deployed API behind OIDC: the headers built from
the environment, the refusals naming the variable (never the value), and the
pre-flight that stops on a login redirect instead of measuring the login page."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from simulator.load import cli
from simulator.load.api_auth import BEARER_ENV, COOKIE_ENV, ApiAuthError, auth_headers
from simulator.load.sse_listener import AnomalyStreamListener
from simulator.load.target import Target, TargetError

ALB_COOKIE = "AWSELBAuthSessionCookie-0=eyJhbGciOiJFUzI1NiJ9.abc; AWSELBAuthSessionCookie-1=xyz=="


def test_no_variable_no_header() -> None:
    assert auth_headers({}) == {}
    assert auth_headers({COOKIE_ENV: "  ", BEARER_ENV: ""}) == {}


def test_session_cookie_and_bearer_token_become_headers() -> None:
    token = "eyJ0eXAi.eyJzdWIi.sig-_~+/=="
    headers = auth_headers({COOKIE_ENV: f" {ALB_COOKIE} ", BEARER_ENV: token})
    assert headers == {
        "Cookie": ALB_COOKIE,
        "Authorization": f"Bearer {token}",
    }
    # A value pasted with its scheme is accepted once, not doubled.
    assert auth_headers({BEARER_ENV: "Bearer abc.def"}) == {"Authorization": "Bearer abc.def"}
    # A quoted cookie value (RFC 6265) passes as is.
    assert auth_headers({COOKIE_ENV: 'a="q1"'}) == {"Cookie": 'a="q1"'}


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        (BEARER_ENV, "s3cr3t def", "not a bearer token"),
        (BEARER_ENV, "s3cr3t\r\nX-Injected: 1", "not a bearer token"),
        (BEARER_ENV, "a=s3cr3t", "not a bearer token"),
        (COOKIE_ENV, "AWSELBAuthSessionCookie-0s3cr3t", "pair 1 is not name=value"),
        (COOKIE_ENV, "a=1; =s3cr3t", "pair 2 is not name=value"),
        (COOKIE_ENV, "a=1; b=s3cr3t words", "cookie 'b' has characters"),
        (COOKIE_ENV, "a=s3cr3t\r\nX-Injected: 1", "cookie 'a' has characters"),
        (COOKIE_ENV, 'a="s3cr3t', "cookie 'a' has characters"),
    ],
)
def test_malformed_values_are_refused_naming_the_variable_not_the_value(
    variable: str, value: str, says: str
) -> None:
    with pytest.raises(ApiAuthError) as caught:
        auth_headers({variable: value})
    message = str(caught.value)
    assert message.startswith(variable)
    assert says in message
    assert "s3cr3t" not in message


def test_stream_listener_sends_the_environments_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(COOKIE_ENV, ALB_COOKIE)
    listener = AnomalyStreamListener(object(), "http://api", count=1)
    assert listener.headers == {"Cookie": ALB_COOKIE}
    explicit = AnomalyStreamListener(object(), "http://api", count=1, headers={})
    assert explicit.headers == {}


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []
    answer = 200

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        self.send_response(self.answer)
        if self.answer == 302:
            self.send_header("Location", "https://idp.example/authorize")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_stub() -> Iterator[str]:
    """An in-process HTTP stub: the response handling of the pre-flight, not the API."""
    _Handler.seen = []
    _Handler.answer = 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _target(url: str) -> Target:
    return Target(kind="deployed", stream_name="s", region="eu-west-1", api_url=url)


def test_preflight_sends_the_headers(api_stub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BEARER_ENV, "tok.en")
    monkeypatch.delenv(COOKIE_ENV, raising=False)
    cli.preflight_api(_target(api_stub))
    assert _Handler.seen[-1]["Authorization"] == "Bearer tok.en"


def test_preflight_stops_on_a_login_redirect_naming_both_variables(
    api_stub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BEARER_ENV, raising=False)
    monkeypatch.delenv(COOKIE_ENV, raising=False)
    _Handler.answer = 302
    with pytest.raises(TargetError, match=f"answered 302.*{COOKIE_ENV}.*{BEARER_ENV}"):
        cli.preflight_api(_target(api_stub))
    assert len(_Handler.seen) == 1  # the identity provider was not followed


def test_preflight_refuses_a_malformed_variable_before_any_request(
    api_stub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(COOKIE_ENV, "no-equals-sign")
    with pytest.raises(TargetError, match=COOKIE_ENV):
        cli.preflight_api(_target(api_stub))
    assert _Handler.seen == []
