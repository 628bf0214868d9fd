"""Who may see the dashboard and who may change something through it.

- No token: the app answers only on a loopback address (the server's own
  address, as the ASGI scope gives it), read-only: every action is refused.
- A token: every page but /healthz, /readyz and /login needs it, as a bearer
  header or as the HttpOnly, SameSite=Strict cookie /login sets (the cookie
  holds an HMAC of the token, not the token). An action is a POST; one made
  with the cookie must also come from the page itself: its Origin (when the
  browser sends one) names this host, and it carries the page's CSRF token
  (an HMAC of the token) among its signals. A bearer header is no ambient
  credential, so a script sending one needs no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from ..errors import ConfigurationError

COOKIE = "statekeep_session"


def loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """ConfigurationError for serving beyond this machine without a token."""
    if not loopback(host) and not token:
        raise ConfigurationError(
            f"statekeep.web: serving on {host!r} reaches beyond this machine, so it needs a "
            "token: pass token=... (or set STATEKEEP_TOKEN), or bind to 127.0.0.1"
        )


def check_token(token: str | None) -> None:
    if token is None:
        return
    if not isinstance(token, str) or len(token) < 16 or token != token.strip():
        raise ConfigurationError(
            "statekeep.web: a token must be a string of at least 16 characters without "
            "surrounding spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )


class Guard:
    def __init__(self, token: str | None) -> None:
        check_token(token)
        self.token = token
        key = (token or "").encode()
        self._session = _mac(key, "session")
        self.csrf = _mac(key, "csrf") if token else ""

    @property
    def login(self) -> bool:
        return self.token is not None

    def reachable(self, request: Request) -> bool:
        """Whether this app may answer this request at all (no token: loopback only)."""
        if self.token is not None:
            return True
        server = request.scope.get("server")
        return server is None or loopback(str(server[0]))

    def bearer(self, request: Request) -> bool:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return (
            self.token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(value.strip().encode(), self.token.encode())
        )

    def signed_in(self, request: Request) -> bool:
        """Whether the request carries the token (a bearer header or the session cookie)."""
        if self.token is None:
            return False
        cookie = request.cookies.get(COOKIE, "")
        return self.bearer(request) or hmac.compare_digest(cookie.encode(), self._session.encode())

    def may_view(self, request: Request) -> bool:
        return self.token is None or self.signed_in(request)

    def right_token(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def session_cookie(self) -> str:
        return self._session

    def same_origin(self, request: Request) -> bool:
        """The browser says the request comes from this host's own pages (or says nothing)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        return urlsplit(origin).netloc == request.headers.get("host", "")

    def may_act(self, request: Request, signals: dict[str, Any] | None) -> tuple[int, str] | None:
        """None when the request may change something; else (status, why).
        signals None: the checks that need no body (who asks, from where)."""
        if self.token is None:
            return 403, "this dashboard is read-only: it was started without a token"
        if self.bearer(request):
            return None
        if not self.signed_in(request):
            return 401, "sign in first: this action needs the dashboard's token"
        if not self.same_origin(request):
            return 403, "refused: the request does not come from this dashboard's page"
        if signals is None:
            return None
        given = signals.get("csrf")
        if not isinstance(given, str) or not hmac.compare_digest(
            given.encode(), self.csrf.encode()
        ):
            return 403, "refused: the request lacks this dashboard's CSRF token"
        return None


def _mac(key: bytes, what: str) -> str:
    return hmac.new(key, f"statekeep.web:{what}".encode(), hashlib.sha256).hexdigest()
