"""Small blocking HTTP/JSON client for the LLM exporters (standard library only).

Every call returns a :class:`Result` instead of raising: the collectors turn its ``kind`` into
error counters and ``up`` series. Kinds: ``ok``, ``unreachable`` (connection refused/reset, DNS),
``timeout``, ``http_4xx``, ``auth`` (401/403), ``rate_limited`` (429), ``http_5xx``, ``malformed``
(body is not the expected JSON). Secrets (Authorization headers) are never logged or put into
error texts.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

ERROR_KINDS = ("unreachable", "timeout", "http_4xx", "auth", "rate_limited", "http_5xx", "malformed")
MAX_BODY = 16 * 1024 * 1024


@dataclass
class Result:
    kind: str
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def retry_after(self, now: float | None = None) -> float | None:
        """Seconds from the Retry-After header (delta seconds or an HTTP date), if any."""
        value = self.headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        return max(0.0, when - (time.time() if now is None else now))


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def kind_for_status(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "http_5xx"
    return "http_4xx"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to the same scheme+host (LiteLLM redirects /metrics to /metrics/)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if (old.scheme, old.netloc) != (new.scheme, new.netloc):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoRedirect(), urllib.request.ProxyHandler({}))


def get(url: str, *, timeout: float, headers: dict[str, str] | None = None) -> Result:
    """GET ``url``; never raises for network or HTTP errors."""
    if not url.startswith(("http://", "https://")):
        return Result("unreachable", detail="only http:// and https:// URLs are supported")
    req = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})  # noqa: S310
    t0 = time.perf_counter()
    try:
        with _OPENER.open(req, timeout=timeout) as resp:  # scheme checked above
            body = resp.read(MAX_BODY)
            hdrs = {k.lower(): v for k, v in resp.headers.items()}
            return Result(kind_for_status(resp.status), resp.status, body, hdrs, elapsed=time.perf_counter() - t0)
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read(65536)
        except Exception:
            body = b""
        hdrs = {k.lower(): v for k, v in (exc.headers or {}).items()}
        return Result(
            kind_for_status(exc.code), exc.code, body, hdrs, detail=f"HTTP {exc.code}", elapsed=time.perf_counter() - t0
        )
    except urllib.error.URLError as exc:
        reason = exc.reason
        kind = "timeout" if isinstance(reason, TimeoutError) else "unreachable"
        return Result(kind, detail=str(reason)[:200], elapsed=time.perf_counter() - t0)
    except TimeoutError:
        return Result("timeout", detail=f"no answer within {timeout:g}s", elapsed=time.perf_counter() - t0)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Result(
            "unreachable", detail=f"{exc.__class__.__name__}: {str(exc)[:200]}", elapsed=time.perf_counter() - t0
        )


def get_json(
    url: str, *, timeout: float, headers: dict[str, str] | None = None, expect: type | tuple[type, ...] = (dict, list)
) -> tuple[Result, Any]:
    """GET and decode JSON; a 2xx answer that is not JSON of type ``expect`` becomes ``malformed``."""
    res = get(url, timeout=timeout, headers=headers)
    if not res.ok:
        return res, None
    try:
        data = res.json()
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        res.kind, res.detail = "malformed", f"invalid JSON: {exc}"[:200]
        return res, None
    if not isinstance(data, expect):
        res.kind, res.detail = "malformed", f"unexpected JSON type {type(data).__name__}"
        return res, None
    return res, data
