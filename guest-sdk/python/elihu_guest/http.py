"""Outbound HTTP for elihu jobs, over ``wasi:http``: a small blocking client.

    from elihu_guest import http

    response = http.post(url, json={"order": 42}, headers={"authorization": f"Bearer {token}"})
    if response.status >= 400: ...
    data = http.get(url).json()

Only hosts the job's template grants are reachable: any other request
raises :class:`HttpError` (``HTTP request denied``) and the run's log names
the refused URL. Headers a grant makes the host add (a bearer token from a
secret) can be neither set nor read here. Every call is in the run's audit.
"""

from __future__ import annotations

import json as _json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union
from urllib.parse import urlsplit

try:
    from componentize_py_types import Err, Ok
    from wit_world.imports import outgoing_handler as _handler
    from wit_world.imports import streams as _streams
    from wit_world.imports import wasi_http_types as _http
except ImportError:  # outside a built component
    _http = None

__all__ = ["HttpError", "Response", "request", "get", "post", "put", "delete"]

# The largest write wasi:io's blocking-write-and-flush takes at once.
_WRITE_CHUNK = 4096
_READ_CHUNK = 64 * 1024


class HttpError(Exception):
    """A request that got no response: refused by the template's grants, a
    connection, TLS or timeout failure, a header the host forbids. The
    message names the method, the URL and the ``wasi:http`` error."""


@dataclass(frozen=True)
class Response:
    """A response, its body read to the end."""

    status: int
    """The status code."""
    headers: list[tuple[str, str]]
    """The header fields in the order they came (names in lower case)."""
    body: bytes
    """The body."""

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (any case), or ``None``."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not."""
        return _json.loads(self.body)


def get(url: str, **options: Any) -> Response:
    """``request("GET", url, ...)``."""
    return request("GET", url, **options)


def post(url: str, **options: Any) -> Response:
    """``request("POST", url, ...)``."""
    return request("POST", url, **options)


def put(url: str, **options: Any) -> Response:
    """``request("PUT", url, ...)``."""
    return request("PUT", url, **options)


def delete(url: str, **options: Any) -> Response:
    """``request("DELETE", url, ...)``."""
    return request("DELETE", url, **options)


def request(
    method: str,
    url: str,
    *,
    headers: Optional[Mapping[str, str]] = None,
    body: Union[bytes, str, None] = None,
    json: Any = None,
    timeout: Optional[float] = None,
) -> Response:
    """Sends a request and reads its response to the end.

    ``json`` (anything ``json.dumps`` takes) is sent as the body with
    ``content-type: application/json`` unless ``headers`` set one;
    ``timeout`` (seconds) bounds the connect and the wait for the first
    byte (the template's limits and the run's deadline bound them anyway).
    Raises :class:`HttpError` when no response comes, ``ValueError`` for a
    URL that is not ``http://`` or ``https://``."""
    if _http is None:
        raise RuntimeError("elihu_guest.http works only inside a job component built with `python3 -m elihu_guest.build`")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    fields = {k.lower(): v for k, v in (headers or {}).items()}
    if json is not None:
        if body is not None:
            raise ValueError("give body or json, not both")
        body = _json.dumps(json, separators=(",", ":"))
        fields.setdefault("content-type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")
    what = f"{method.upper()} {url}"
    try:
        header_fields = _http.Fields.from_list([(k, v.encode("utf-8")) for k, v in fields.items()])
    except Err as e:
        raise HttpError(f"{what}: a header is refused ({_name(e.value)})") from None
    outgoing = _http.OutgoingRequest(header_fields)
    outgoing.set_method(_method(method))
    outgoing.set_scheme(_http.Scheme_Https() if parts.scheme == "https" else _http.Scheme_Http())
    outgoing.set_authority(parts.netloc)
    outgoing.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    outgoing_body = outgoing.body() if body else None
    options = None
    if timeout is not None:
        options = _http.RequestOptions()
        nanos = int(timeout * 1e9)
        options.set_connect_timeout(nanos)
        options.set_first_byte_timeout(nanos)
    try:
        future = _handler.handle(outgoing, options)
    except Err as e:
        raise HttpError(f"{what}: {_name(e.value)}") from None
    with future:
        if outgoing_body is not None:
            _send(outgoing_body, body, what)
        with future.subscribe() as ready:
            ready.block()
        outcome = future.get()
    if outcome is None or isinstance(outcome, Err) or isinstance(outcome.value, Err):
        code = outcome.value.value if isinstance(outcome, Ok) else None
        raise HttpError(f"{what}: {_name(code) if code is not None else 'no response'}")
    with outcome.value.value as response:
        status = response.status()
        with response.headers() as header_list:
            received = [(k, v.decode("latin-1")) for k, v in header_list.entries()]
        content = _receive(response.consume(), what)
    return Response(status=status, headers=received, body=content)


def _send(outgoing_body: Any, body: bytes, what: str) -> None:
    try:
        with outgoing_body.write() as stream:
            for start in range(0, len(body), _WRITE_CHUNK):
                stream.blocking_write_and_flush(body[start : start + _WRITE_CHUNK])
        _http.OutgoingBody.finish(outgoing_body, None)
    except Err as e:
        raise HttpError(f"{what}: sending the body failed ({_name(e.value)})") from None


def _receive(incoming_body: Any, what: str) -> bytes:
    chunks = []
    with incoming_body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(_READ_CHUNK))
            except Err as e:
                if isinstance(e.value, _streams.StreamError_Closed):
                    break
                raise HttpError(f"{what}: reading the response failed") from None
    with _http.IncomingBody.finish(incoming_body):
        pass
    return b"".join(chunks)


_METHODS = {
    "GET": "Method_Get",
    "HEAD": "Method_Head",
    "POST": "Method_Post",
    "PUT": "Method_Put",
    "DELETE": "Method_Delete",
    "OPTIONS": "Method_Options",
    "PATCH": "Method_Patch",
}


def _method(method: str) -> Any:
    known = _METHODS.get(method.upper())
    return getattr(_http, known)() if known else _http.Method_Other(method)


def _name(code: Any) -> str:
    """``ErrorCode_HttpRequestDenied()`` as ``HTTP request denied``."""
    name = type(code).__name__.split("_", 1)[-1]
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower().replace("http ", "HTTP ").replace("dns ", "DNS ").replace("tls ", "TLS ")
    detail = getattr(code, "value", None)
    return f"{words} ({detail})" if detail is not None else words
