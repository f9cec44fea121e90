"""A local stand-in of Volcengine's OpenAPI, for the real official SDKs to talk to.

It answers `POST /?Action=<action>&Version=<version>` with a JSON body, as open.volcengineapi.com
does: `{"ResponseMetadata": {...}, "Result": {...}}`, or `ResponseMetadata.Error` with the HTTP
status Volcengine gives. It checks that each request is signed and carries the fields the action
requires (recorded in `violations`), records every call, and keeps the state the actions change.
`deny` makes an action answer AccessDenied, as a key whose policy lacks it would get.
The veFaaS actions are here; the deploy and reconcile tests share it.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.servers import LocalServer

ACCESS_KEY = "AKLTlocalstandin"
SECRET_KEY = "c2VjcmV0LW9mLXRoZS1zdGFuZC1pbg=="
# The fields each action cannot do without (from the SDK's models: required ones, and what the
# deploy cannot mean to leave out).
REQUIRED = {
    "ListFunctions": (),
    "GetFunction": ("Id",),
    "CreateFunction": ("Name", "Runtime", "Command", "Port"),
    "UpdateFunction": ("Id",),
    "GetCodeUploadAddress": ("FunctionId", "ContentLength"),
    "CodeUploadCallback": ("FunctionId",),
    "CreateDependencyInstallTask": ("FunctionId",),
    "GetDependencyInstallTaskStatus": ("FunctionId",),
    "Release": ("FunctionId", "RevisionNumber"),
    "GetReleaseStatus": ("FunctionId",),
    "ListTriggers": ("FunctionId",),
    "CreateTimer": ("FunctionId", "Name", "Crontab"),
    "GetTimer": ("FunctionId", "Id"),
    "UpdateTimer": ("FunctionId", "Id"),
}


@dataclass
class Call:
    action: str
    version: str
    body: dict[str, Any]


@dataclass
class Function:
    id: str
    name: str
    runtime: str
    fields: dict[str, Any]  # as the last create or update gave them (Command, Port, MemoryMB, Envs...)
    code: bytes = field(default=b"", repr=False)
    released: bytes = field(default=b"", repr=False)  # the code the last release put live
    triggers: list[dict[str, Any]] = field(default_factory=list)


class OpenAPIStub(LocalServer):
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.deny: set[str] = set()
        self.functions: dict[str, Function] = {}
        self.release_status = "Succeeded"
        self.upload_base = ""  # where presigned upload addresses point; this server when empty
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    def actions(self) -> list[str]:
        return [c.action for c in self.calls]

    def function(self, name: str) -> Function:
        (found,) = [f for f in self.functions.values() if f.name == name]
        return found

    # Actions: each takes the request body and gives the Result ------------------------------

    def _list_functions(self, body: dict[str, Any]) -> dict[str, Any]:
        names = {v for f in body.get("Filters") or [] if f.get("Name") == "Name" for v in f.get("Values") or []}
        items = [
            {"Id": f.id, "Name": f.name, "Runtime": f.runtime}
            for f in self.functions.values()
            if not names or f.name in names
        ]
        return {"Items": items, "Total": len(items)}

    def _get_function(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["Id"])
        return {"Id": function.id, "Name": function.name, "Runtime": function.runtime, **function.fields}

    def _create_function(self, body: dict[str, Any]) -> dict[str, Any]:
        function_id = f"fn{next(self._ids):06d}"
        fields = {k: v for k, v in body.items() if k not in ("Name", "Runtime")}
        self.functions[function_id] = Function(function_id, body["Name"], body["Runtime"], fields)
        return {"Id": function_id, "Name": body["Name"]}

    def _update_function(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["Id"])
        function.fields.update({k: v for k, v in body.items() if k != "Id"})
        return {"Id": function.id}

    def _get_code_upload_address(self, body: dict[str, Any]) -> dict[str, Any]:
        self._by_id(body["FunctionId"])
        base = self.upload_base or self.origin
        return {"UploadAddress": f"{base}/upload/{body['FunctionId']}?X-Tos-Signature=secret-signature"}

    def _code_upload_callback(self, body: dict[str, Any]) -> dict[str, Any]:
        self._by_id(body["FunctionId"])
        return {}

    def _create_dependency_install_task(self, body: dict[str, Any]) -> dict[str, Any]:
        self._by_id(body["FunctionId"])
        return {}

    def _get_dependency_install_task_status(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"FunctionId": body["FunctionId"], "Status": "Succeeded"}

    def _release(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["FunctionId"])
        function.released = function.code
        return {"FunctionId": function.id, "Status": "InProgress"}

    def _get_release_status(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"FunctionId": body["FunctionId"], "Status": self.release_status}

    def _list_triggers(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["FunctionId"])
        return {"Items": function.triggers, "Total": len(function.triggers)}

    def _create_timer(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["FunctionId"])
        timer = {"Id": f"tm{next(self._ids):06d}", "Type": "timer", "FunctionId": function.id, **body}
        function.triggers.append(timer)
        return timer

    def _get_timer(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._timer(body)

    def _update_timer(self, body: dict[str, Any]) -> dict[str, Any]:
        timer = self._timer(body)
        timer.update(body)
        return timer

    def _timer(self, body: dict[str, Any]) -> dict[str, Any]:
        found = [t for t in self._by_id(body["FunctionId"]).triggers if t["Id"] == body["Id"]]
        if not found:
            raise _Refusal(404, "ResourceNotFound.Timer", f"timer {body['Id']} not found")
        return found[0]

    def _by_id(self, function_id: str) -> Function:
        if function_id not in self.functions:
            raise _Refusal(404, "ResourceNotFound.Function", f"function {function_id} not found")
        return self.functions[function_id]

    def _actions(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "ListFunctions": self._list_functions,
            "GetFunction": self._get_function,
            "CreateFunction": self._create_function,
            "UpdateFunction": self._update_function,
            "GetCodeUploadAddress": self._get_code_upload_address,
            "CodeUploadCallback": self._code_upload_callback,
            "CreateDependencyInstallTask": self._create_dependency_install_task,
            "GetDependencyInstallTaskStatus": self._get_dependency_install_task_status,
            "Release": self._release,
            "GetReleaseStatus": self._get_release_status,
            "ListTriggers": self._list_triggers,
            "CreateTimer": self._create_timer,
            "GetTimer": self._get_timer,
            "UpdateTimer": self._update_timer,
        }

    def _handle(self, action: str, version: str, headers: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        authorization = headers.get("Authorization", "")
        if not authorization.startswith(f"HMAC-SHA256 Credential={ACCESS_KEY}/") or not headers.get("X-Date"):
            raise _Refusal(401, "InvalidAccessKey", "the request is not signed with a known access key")
        handler = self._actions().get(action)
        if handler is None:
            raise _Refusal(404, "InvalidActionOrVersion", f"{action} {version} is not an action of this stand-in")
        missing = [name for name in REQUIRED.get(action, ()) if body.get(name) in (None, "")]
        if missing:
            self.violations.append(f"{action} without {missing}")
            raise _Refusal(400, "MissingParameter", f"{action} needs {missing}")
        if action in self.deny:
            raise _Refusal(403, "AccessDenied", f"User is not authorized to perform: {action}")
        return 200, handler(body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:  # the presigned code upload address
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                function_id = urlsplit(self.path).path.rsplit("/", 1)[-1]
                with stub._lock:
                    stub.functions[function_id].code = data
                self._reply(200, b"")

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                action, version = query.get("Action", ""), query.get("Version", "")
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                metadata: dict[str, Any] = {"RequestId": "standin", "Action": action, "Version": version}
                with stub._lock:
                    stub.calls.append(Call(action, version, body if isinstance(body, dict) else {}))
                    try:
                        if not isinstance(body, dict):
                            stub.violations.append(f"{action}: body is not a JSON object")
                            raise _Refusal(400, "InvalidParameter", "the body is not a JSON object")
                        status, result = stub._handle(action, version, self.headers, body)
                        answer: dict[str, Any] = {"ResponseMetadata": metadata, "Result": result}
                    except _Refusal as refusal:
                        status = refusal.status
                        error = {"Code": refusal.code, "Message": refusal.message}
                        answer = {"ResponseMetadata": {**metadata, "Error": error}}
                self._reply(status, json.dumps(answer).encode(), "application/json")

            def _reply(self, status: int, data: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
