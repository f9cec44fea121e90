"""A forward HTTP proxy on 127.0.0.1, as strict as a corporate one: it takes only absolute-form
request lines, asks for Basic credentials (407 with Proxy-Authenticate) when it has some, and
forwards what it accepts to the origin, answering with the origin's answer."""

from __future__ import annotations

import base64
import http.client
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.support.servers import LocalServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer", "upgrade"}


@dataclass
class Forwarded:
    origin: str  # scheme://host:port of the request it was asked to make
    authorized: bool


class ProxyStub(LocalServer):
    def __init__(self, credentials: str | None = None) -> None:
        """`credentials` as "user:password": then every request without them is refused with 407."""
        self.forwarded: list[Forwarded] = []
        self.refused = 0
        expected = None if credentials is None else "Basic " + base64.b64encode(credentials.encode()).decode()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = urlsplit(self.path)
                if not target.scheme or not target.hostname:
                    self._answer(400, {}, b"a proxy takes absolute-form request lines only")
                    return
                if expected is not None and self.headers.get("Proxy-Authorization") != expected:
                    stub.refused += 1
                    self._answer(407, {"Proxy-Authenticate": 'Basic realm="proxy"'}, b"")
                    return
                stub.forwarded.append(Forwarded(f"{target.scheme}://{target.netloc}", expected is not None))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                origin = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
                try:
                    path = target.path + (f"?{target.query}" if target.query else "")
                    origin.request("POST", path, body=body, headers=headers)
                    answer = origin.getresponse()
                    answered = {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP}
                    self._answer(answer.status, answered, answer.read())
                except OSError:
                    self._answer(502, {}, b"the origin did not answer")
                finally:
                    origin.close()

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(Handler)
