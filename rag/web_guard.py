"""What the web app lets through before anyone has logged in: an ASGI middleware in front of Gradio.

Gradio (6.x) checks the login on its API, file and config routes, but not everywhere: `/gradio_api/reset`
and `/gradio_api/cancel` answer without a login, and its login form takes any number of guesses. With
`RAG_AUTH` set, this middleware

- refuses every `/gradio_api/...` request without a valid session cookie (401) before Gradio reads it
  (an upload is turned away before any byte of it is stored);
- throttles logins: after `Settings.login_max_failures` failed attempts from one client address, every
  attempt from it is answered 429 for `Settings.login_lockout_s` seconds (the right password too).

Hand-written because Gradio has no hook for either; it is installed through `launch(app_kwargs=...)`,
Gradio's documented way to pass FastAPI arguments. Without `RAG_AUTH` it passes everything through.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie

API_PREFIX = "/gradio_api/"
# Called by Gradio itself at launch, from this machine, before anyone can log in; it only starts the queue.
OPEN_API_PATHS = ("/gradio_api/startup-events",)
LOGIN_PATHS = ("/login", "/login/")


@dataclass
class _Client:
    failures: int = 0
    locked_until: float = 0.0


class LoginGuard:
    """ASGI middleware: API routes need a login, and failed logins lock a client address out for a while."""

    def __init__(self, app, *, max_failures: int, lockout_s: float, clock=time.monotonic) -> None:
        self.app = app
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.clock = clock
        self.clients: dict[str, _Client] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or getattr(scope.get("app"), "auth", None) is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in LOGIN_PATHS and scope["method"] == "POST":
            await self._login(scope, receive, send)
        elif path.startswith(API_PREFIX) and path not in OPEN_API_PATHS and not self._logged_in(scope):
            await _reply(send, 401, "Not authenticated: log in first.")
        else:
            await self.app(scope, receive, send)

    def _logged_in(self, scope) -> bool:
        """The request carries a session token Gradio issued at login (cookie names as in gradio/routes.py)."""
        app = scope["app"]
        cookies = SimpleCookie()
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                cookies.load(value.decode("latin-1"))
        tokens = getattr(app, "tokens", {})
        for name in (f"access-token-{app.cookie_id}", f"access-token-unsecure-{app.cookie_id}"):
            if name in cookies and cookies[name].value in tokens:
                return True
        return False

    async def _login(self, scope, receive, send) -> None:
        address = (scope.get("client") or ("unknown",))[0]
        now = self.clock()
        client = self.clients.setdefault(address, _Client())
        if client.locked_until > now:
            wait = int(client.locked_until - now) + 1
            await _reply(send, 429, f"Too many failed logins from this address: try again in {wait} s.")
            return
        if client.locked_until:  # a lock-out that has run out starts a fresh count
            client.failures, client.locked_until = 0, 0.0
        # Counted before the answer, so attempts sent in parallel cannot exceed the limit either.
        client.failures += 1
        if client.failures >= self.max_failures:
            client.locked_until = now + self.lockout_s
        status = {}

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if status.get("code") == 200:
            self.clients.pop(address, None)
        self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        """Keep the table small: addresses whose lock-out ran out (or that never reached one) are dropped
        once it holds more than 10,000 of them."""
        if len(self.clients) > 10_000:
            for address in [a for a, c in self.clients.items() if c.locked_until < now]:
                del self.clients[address]


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
