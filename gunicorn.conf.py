"""gunicorn settings for the relay as deployed: run.sh (and so `make run` and veFaaS) start gunicorn with them.

functions-framework's own runner reads no config file and lifts gunicorn's request-line limit
(`limit_request_line=0`: a 16 MiB request line took 26 s and 148 MB to parse), so run.sh runs
gunicorn itself; the application is still functions-framework's, from create_app.
"""

import errno
import logging
import os
import select
import socket
import sys
import time

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

import config as relay_config  # gunicorn reads every name here as a setting, and `config` is one
from logs import JsonFormatter


def _whole(name: str, default: int, high: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        sys.exit(f"relay: {name} must be a whole number from 1 to {high}, got {raw!r}")
    return int(raw)


# A bad setting stops the server before it starts, in one line that names it (not a worker's traceback).
try:
    _settings = relay_config.load(os.environ)
except relay_config.ConfigError as error:
    sys.exit(f"relay: {error}")
_port = os.environ.get("_FAAS_RUNTIME_PORT") or os.environ.get("_BYTEFAAS_RUNTIME_PORT") or "8000"
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{_port}"
workers = _whole("WORKERS", 1, 64)  # Flashduty's limits are kept per process
threads = _whole("THREADS", 16, 1024)
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "warning").strip().lower()
if loglevel not in ("debug", "info", "warning", "error", "critical"):
    sys.exit(f"relay: GUNICORN_LOG_LEVEL must be debug, info, warning, error or critical, got {loglevel!r}")
accesslog = None  # no request lines: a callback URL's query may carry the token
# gunicorn's own lines as JSON too (logs.JsonFormatter), like the relay's and urllib3's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": []},  # the relay adds its own (logs.configure)
    "loggers": {"gunicorn.error": {"level": loglevel.upper(), "handlers": ["stderr"], "propagate": False}},
}
# A callback needs no long request line or many headers: gunicorn's defaults, answered 414 / 400 past them.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
timeout = 30  # a worker that stops answering its arbiter is restarted
graceful_timeout = 10
keepalive = 5
# No control socket: nothing here uses gunicornc, and its one path under $HOME is shared by every server
# on the machine (and may be read-only on a FaaS).
control_socket_disable = True
BODY_STALL_SECONDS = 5.0
BODY_SECONDS = 5.0  # a whole body, as the relay gives it (callback.BODY_READ_SECONDS)
HEADERS_SECONDS = 5.0  # a request line and headers, from the first byte read of them


class _Headers:
    """A connection's socket whose reads of one request's line and headers end HEADERS_SECONDS after
    the first, however steadily the client sends: a stranger sending a byte, or headers a byte a
    second, frees its thread then (the connection is dropped, as one that went away), where it held
    it for as long as it kept sending. pre_request budgets the body; post_request starts the next
    request's headers afresh (keep-alive)."""

    def __init__(self, sock):
        self.raw, self._deadline = sock, None

    def recv(self, size):
        if self._deadline is None:
            self._deadline = time.monotonic() + HEADERS_SECONDS
        poll = select.poll()  # whatever the socket's blocking mode: gunicorn's reads block
        poll.register(self.raw, select.POLLIN)
        left = self._deadline - time.monotonic()
        if left <= 0 or not poll.poll(left * 1000):
            raise NoMoreData(b"")  # gunicorn closes the connection quietly
        return self.raw.recv(size)

    def restart(self):
        self._deadline = None

    def __getattr__(self, name):
        return getattr(self.raw, name)


class _Worker(ThreadWorker):
    """gunicorn's threaded worker, each plain connection read through _Headers. (Over TLS, which the
    relay leaves to the gateway in front, gunicorn's own reads are kept.)"""

    def enqueue_req(self, conn):
        if not isinstance(conn.sock, _Headers) and not self.cfg.is_ssl:
            conn.sock = _Headers(conn.sock)
        super().enqueue_req(conn)


worker_class = _Worker


def pre_request(worker, req):
    """A client that stops sending its body, or trickles it, frees its thread: every read of it waits at
    most BODY_STALL_SECONDS, and none starts later than BODY_SECONDS after the headers. (gunicorn reads
    at least 1 KiB of a body whatever the application asks for, so the relay's own deadline, checked
    between reads, cannot stop a stranger sending a small body a byte at a time.)"""
    unreader = getattr(req, "unreader", None)
    sock = getattr(unreader, "sock", None)
    if sock is None:
        return
    headers = sock if isinstance(sock, _Headers) else None
    sock = getattr(sock, "raw", sock)
    sock.settimeout(BODY_STALL_SECONDS)
    unreader.sock = _Budgeted(sock, time.monotonic() + BODY_SECONDS, headers)


def post_request(worker, req, environ, resp):
    """The connection's next request (keep-alive) has its headers budgeted afresh, not this one's body."""
    unreader = getattr(req, "unreader", None)
    budgeted = getattr(unreader, "sock", None)
    if isinstance(budgeted, _Budgeted):
        unreader.sock = budgeted.headers or budgeted.raw
        if budgeted.headers:
            budgeted.headers.restart()


class _Budgeted:
    """A request's socket whose reads end at a deadline, however steadily the client sends."""

    def __init__(self, sock, deadline, headers=None):
        self.raw, self._deadline, self.headers = sock, deadline, headers

    def recv(self, size):
        if time.monotonic() >= self._deadline:
            raise TimeoutError("request body not received in time")
        return self.raw.recv(size)

    def __getattr__(self, name):
        return getattr(self.raw, name)


def post_worker_init(worker):
    """An answer that says `Connection: close` (the relay's refusals, main.relay) ends the connection
    at once, its unread body unread.

    WSGI servers drop hop-by-hop headers an application sets, and gunicorn then keeps the connection
    alive by reading what is left of the body first, holding a thread while a refused stranger
    trickles it. Closing, gunicorn lingers on the main thread for up to 2 s per connection to read
    what the client still sends, which a stranger that keeps sending turns into a stall of every
    connection. So the refusal's own thread ends the connection once the answer is written: it
    stops sending (the client reads the whole answer, then the end), and stops reading.
    """
    app = worker.wsgi

    def closing_refusals(environ, start_response):
        closing = False

        def start(status, headers, exc_info=None):
            nonlocal closing
            closing = any(name.lower() == "connection" and value.lower() == "close" for name, value in headers)
            if closing and hasattr(getattr(start_response, "__self__", None), "force_close"):
                start_response.__self__.force_close()  # gunicorn's response: no keep-alive, no drain
            return start_response(status, headers, exc_info)

        answer = app(environ, start)
        sock = environ.get("gunicorn.socket")
        return _EndAfter(answer, sock) if closing and sock is not None else answer

    worker.wsgi = closing_refusals


class _EndAfter:
    """The answer's body; once the server has written all of it (and calls close), the connection ends."""

    def __init__(self, answer, sock):
        self._answer, self._sock = answer, sock

    def __iter__(self):
        return iter(self._answer)

    def close(self):
        try:
            if hasattr(self._answer, "close"):
                self._answer.close()
        finally:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client is gone already


def on_starting(server):
    """A port another program holds stops the start in one line that says what to do, not in
    gunicorn's eleven lines of retrying over 5 s. (A re-exec inherits its own listening socket.)"""
    if server.LISTENERS or server.master_pid or not _port.isdigit():
        return
    host = bind.rsplit(":", 1)[0]
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, int(_port), type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            probe.bind(address)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            sys.exit(
                f"relay: {host}:{_port} is in use by another program: stop it, or start on another port "
                "(make run PORT=<port>; run.sh: _FAAS_RUNTIME_PORT=<port>)"
            )
        # anything else (an unknown HOST): gunicorn says what


def when_ready(server):
    mode = (
        "a dry run: events are shown, not sent; set FLASHDUTY_INTEGRATION_KEY to deliver"
        if _settings.dry_run
        else "delivering"
    )
    host, port = server.address[0][:2] if server.address else (bind, "")
    line = logging.LogRecord(
        "relay", logging.INFO, __file__, 0, f"relay listening on http://{host}:{port}/ ({mode})", None, None
    )
    print(JsonFormatter().format(line), file=sys.stderr, flush=True)
