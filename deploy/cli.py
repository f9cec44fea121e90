"""The command line (`python -m deploy`, `python -m deploy test`), and the order of the deploy's steps."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TextIO

import requests

import config
import deploy
import volcengine_api
from callback import VERSION
from deploy.calls import Caller, DeployError, sdk_clients
from deploy.function import (
    COMMAND,
    DRAIN_TIMER,
    PORT,
    RECONCILE_TIMER,
    STORE_CREDENTIALS,
    Function,
    Target,
    refuse_what_cannot_work,
)
from deploy.gateway import Gateway
from deploy.monitor import Monitor, Wiring
from deploy.package import DEFAULT_RUNTIME, PACKAGE, description, minimum_python, runtime_python, zipped
from deploy.wiring_test import wiring_test

# The function's reconcile key: a read-only Cloud Monitor key given apart from the deploying one.
RECONCILE_CREDENTIALS = {
    "RECONCILE_ACCESS_KEY": "VOLCENGINE_ACCESS_KEY",
    "RECONCILE_SECRET_KEY": "VOLCENGINE_SECRET_KEY",
}


def run(clients: argparse.Namespace, target: Target, wiring: Wiring, code: bytes, out: TextIO) -> str | None:
    """Every step, in order; the callback URL, when the function has one."""
    caller = Caller(clients.faas_models.ApiException, out)
    function = Function(caller, clients.faas, clients.faas_models, clients.universal, requests.put)
    found = function.find(target)
    environment = target.wanted_environment(found.settings if found else {})
    settings = config.load(environment)
    refuse_what_cannot_work(settings, environment)
    wanted_description = description(code)
    if found is None:
        function_id = function.create(target, environment, wanted_description)
        code_changed = True
    else:
        function_id = found.id
        function.update(found, target, environment, wanted_description)
        code_changed = found.description != wanted_description
    if code_changed:
        function.upload(function_id, code)
    else:
        function.unchanged_code(code)
    if settings.deadletter is not None:
        function.probe(settings.deadletter, environment)
    function.release(function_id)
    triggers = function.triggers(function_id)
    token = environment.get("CALLBACK_TOKEN")
    if settings.deadletter is not None:
        function.timer(function_id, triggers, DRAIN_TIMER, target.request_timeout, token)
    if environment.get("VOLCENGINE_ACCESS_KEY"):
        function.timer(function_id, triggers, RECONCILE_TIMER, target.request_timeout, token)
    if wiring.gateway:
        gateway = Gateway(caller, clients.gateway, clients.gateway_models, clients.routes, clients.route_models)
        url = gateway.route(function_id, target.name, wiring.gateway)
    else:
        url = next((u for t in triggers for u in re.findall(r"https?://[^\s\"'\\]+", t.detailed_config or "")), None)
    if wiring.monitor:
        if url is None:
            raise DeployError(
                "Cloud Monitor needs the function's URL, and it has none yet: pass --gateway NAME (an API "
                "gateway in this region) so that the deploy routes one to it."
            )
        monitor = Monitor(caller, clients.monitor, clients.monitor_models, clients.universal)
        token_changed = found is None or found.settings.get("CALLBACK_TOKEN") != token
        webhook_id = monitor.webhook(target.name, url, token, token_changed)
        monitor.tick(webhook_id, wiring)
    return url


def plan(target: Target, wiring: Wiring) -> list[str]:
    shell = sorted(target.environment)
    return [
        f"find function {target.name!r} in {target.region}, and read the settings it has",
        f"create it, or update what differs: runtime {target.runtime}, command {COMMAND}, port {PORT}, "
        f"{target.memory_mb} MB, timeout {target.request_timeout} s; environment: its own settings, then "
        f"{shell or 'none'} from this shell" + (f", less {sorted(target.unset)}" if target.unset else ""),
        f"when the code changed: upload the package ({', '.join(PACKAGE)}), install requirements.txt",
        "with DEADLETTER_URI: write and delete a probe object in the store, with the function's credentials",
        "release and wait for it; with DEADLETTER_URI, a timer that drains the store every minute; with "
        "RECONCILE_ACCESS_KEY, a timer that reconciles with Cloud Monitor every 5 minutes",
        *_wiring_plan(target, wiring),
    ]


def _wiring_plan(target: Target, wiring: Wiring) -> list[str]:
    steps = [
        f"on API gateway {wiring.gateway!r}: a VeFaas upstream, a service and a route (POST and GET /) "
        f"named {target.name!r} to the function; print its callback URL"
        if wiring.gateway
        else "print the callback URL of its API gateway trigger (--gateway NAME makes the route)"
    ]
    if wiring.monitor:
        steps.append(
            f"in Cloud Monitor: a Generic Webhook callback URL {target.name!r} to it, with CALLBACK_TOKEN as its token"
        )
    for what, chosen in (("event rules", wiring.event_rules), ("alarm policies", wiring.alarm_policies)):
        if chosen is not None:
            steps.append(f"tick it in the {what} {', '.join(chosen)}, keeping everything else they have")
    return steps


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:
        tester = argparse.ArgumentParser(
            prog="python -m deploy test", description="send a test event and its Ok through the deployed relay"
        )
        tester.add_argument("--url", required=True, help="the callback URL (what Cloud Monitor posts to)")
        tester.add_argument("--token", default=os.environ.get("CALLBACK_TOKEN"), help="default: $CALLBACK_TOKEN")
        test_args = tester.parse_args(argv[1:])
        return wiring_test(test_args.url, test_args.token, out)
    parser = argparse.ArgumentParser(prog="python -m deploy", description=(deploy.__doc__ or "").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"volc-flashduty-relay {VERSION}")
    parser.add_argument("--name", default=os.environ.get("VEFAAS_FUNCTION_NAME", "volc-flashduty-relay"))
    parser.add_argument("--region", default=os.environ.get("VOLCENGINE_REGION", "cn-beijing"))
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, help="veFaaS web-server runtime")
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument(
        "--timeout", type=int, default=30, help="request timeout, seconds (above the delivery deadline)"
    )
    parser.add_argument(
        "--unset", action="append", default=[], metavar="NAME", help="remove this setting from the function"
    )
    parser.add_argument(
        "--dry-run-function",
        action="store_true",
        help="deploy a function that translates and delivers nothing (DRY_RUN=true), even without a key",
    )
    parser.add_argument(
        "--gateway",
        default=os.environ.get("APIG_GATEWAY_NAME"),
        metavar="NAME",
        help="route this API gateway (an existing one, in the region) to the function: its URL is the callback URL",
    )
    parser.add_argument(
        "--event-rules",
        type=_names,
        metavar="ID|NAME,...|all",
        help="tick the relay's callback URL in these Cloud Monitor event rules",
    )
    parser.add_argument(
        "--alarm-policies",
        type=_names,
        metavar="ID|NAME,...|all",
        help="tick the relay's callback URL in these Cloud Monitor alarm policies",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; call nothing")
    args = parser.parse_args(argv)

    low, found = minimum_python(), runtime_python(args.runtime)
    if found is None or found < low:
        parser.exit(2, f"deploy: runtime {args.runtime} runs Python older than the {low[0]}.{low[1]} the code needs\n")
    names = (*config.VARIABLES, *STORE_CREDENTIALS)
    environment = {name: os.environ[name] for name in names if os.environ.get(name)}
    # Reconcile's key reaches the function only as given for it: never this shell's deploying key.
    reconcile_key = {to: os.environ[given] for given, to in RECONCILE_CREDENTIALS.items() if os.environ.get(given)}
    if reconcile_key:
        if len(reconcile_key) < 2:
            parser.exit(2, "deploy: set both RECONCILE_ACCESS_KEY and RECONCILE_SECRET_KEY (a read-only key)\n")
        if reconcile_key["VOLCENGINE_ACCESS_KEY"] == os.environ.get("VOLCENGINE_ACCESS_KEY"):
            parser.exit(
                2,
                "deploy: RECONCILE_ACCESS_KEY is the deploying key: give reconcile a key of its own, "
                "allowed only Cloud Monitor's ListWebhooks and ListAlertGroup\n",
            )
        environment.update(reconcile_key, VOLCENGINE_REGION=args.region, RECONCILE_WEBHOOK=args.name)
    try:
        config.load(environment)  # a setting the function would refuse at start is refused here
        endpoint = volcengine_api.endpoint(os.environ)
    except (config.ConfigError, ValueError) as error:
        parser.exit(2, f"deploy: {error}\n")
    target = Target(
        args.name,
        args.region,
        args.runtime,
        args.memory_mb,
        args.timeout,
        environment,
        frozenset(args.unset),
        args.dry_run_function,
    )
    wiring = Wiring(args.gateway, args.event_rules, args.alarm_policies)
    code = zipped()
    if args.dry_run:
        print(f"would deploy volc-flashduty-relay {VERSION} ({len(code)} bytes) to veFaaS via {endpoint}:", file=out)
        for step in plan(target, wiring):
            print(f"- {step}", file=out)
        if not ({"FLASHDUTY_INTEGRATION_KEY", "ROUTES"} & environment.keys() or args.dry_run_function):
            print(
                "note: FLASHDUTY_INTEGRATION_KEY (or ROUTES) is not set in this shell: the deploy would refuse "
                "unless the function already has it, or --dry-run-function is given.",
                file=out,
            )
        return 0

    access_key, secret_key = os.environ.get("VOLCENGINE_ACCESS_KEY"), os.environ.get("VOLCENGINE_SECRET_KEY")
    if not (access_key and secret_key):
        parser.exit(
            2, "deploy: set VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY (an access key allowed to use veFaaS)\n"
        )
    try:
        url = run(sdk_clients(access_key, secret_key, args.region, endpoint), target, wiring, code, out)
    except DeployError as error:
        parser.exit(1, f"deploy: {error}\n")
    if url:
        print(f"\ndeployed. Callback URL for Cloud Monitor: {url}", file=out)
    else:
        print(
            "\ndeployed. The function has no URL yet: run this again with --gateway NAME (an API gateway in this "
            "region) to route one to it.",
            file=out,
        )
    return 0


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names or ("all" in names and len(names) > 1):
        raise argparse.ArgumentTypeError("give ids or names, comma-separated, or all")
    return names
