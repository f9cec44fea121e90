"""The command line (`python -m deploy`, `python -m deploy test`), and the order of the deploy's steps."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import requests

import config
import deploy
import volcengine_api
from callback import VERSION
from deploy import saved
from deploy.calls import Caller, DeployError, sdk_clients
from deploy.function import (
    COMMAND,
    DRAIN_TIMER,
    PORT,
    RECONCILE_TIMER,
    REQUEST_TIMEOUT,
    STORE_CREDENTIALS,
    Function,
    Target,
    refuse_what_cannot_work,
)
from deploy.gateway import Gateway
from deploy.lease import Lease
from deploy.monitor import Kind, Monitor, Wiring, route_url, ticked, webhook_name
from deploy.package import DEFAULT_RUNTIME, PACKAGE, description, minimum_python, runtime_python, zipped
from deploy.wiring_test import wiring_test

# The function's reconcile key: a read-only Cloud Monitor key given apart from the deploying one.
RECONCILE_SETTINGS = ("FLASHDUTY_APP_KEY", "FLASHDUTY_API_URL")  # reconcile's Flashduty side (the key a secret)
RECONCILE_CREDENTIALS = {
    "RECONCILE_ACCESS_KEY": "VOLCENGINE_ACCESS_KEY",
    "RECONCILE_SECRET_KEY": "VOLCENGINE_SECRET_KEY",
}


def shell(name: str) -> str | None:
    """A setting of this shell; blank (spaces, a newline) is unset, as the relay reads it (config._text)."""
    return os.environ.get(name, "").strip() or None


def run(
    clients: argparse.Namespace, target: Target, wiring: Wiring, code: bytes, backups: saved.Folder, out: TextIO
) -> str | None:
    """Every step, in order; the callback URL, when the function has one."""
    caller = Caller(clients.faas_models.ApiException, out)
    monitor = Monitor(caller, clients.monitor, clients.monitor_models, clients.universal)
    chosen: list[tuple[str, Kind, dict[str, Any]]] = []
    if wiring.monitor:  # every rule is checked before anything is written
        chosen = monitor.rules(wiring)
        found_ids = {}
        for route in wiring.routes:
            webhook = monitor.find_webhook(webhook_name(target.name, route))
            found_ids[route] = str(webhook.id) if webhook else None
        _refuse(_refusals(monitor, chosen, found_ids), "nothing was changed")
    function = Function(caller, clients.faas, clients.faas_models, clients.universal, requests.put)
    found = function.find(target)
    environment = target.wanted_environment(found.settings if found else {})
    _secure(environment, target, wiring, out)
    settings = config.load(environment)
    refuse_what_cannot_work(settings, environment)
    _refuse_undeliverable(settings, wiring)
    if wiring.monitor and not wiring.gateway and not (found and _trigger_url(function.triggers(found.id))):
        raise DeployError(_NO_URL)  # checked before the function is written, not after its release
    wanted_description = description(code)
    if found is None:
        function_id = function.create(target, environment, wanted_description)
        code_changed = True
    else:
        function_id = found.id
        function.update(found, target, environment, wanted_description)
        # Judged by what serves traffic too: a run stopped after the update and before the upload left
        # a draft that names the new code and holds the old.
        code_changed = {found.description, found.live[0] if found.live else ""} != {wanted_description}
    if code_changed:
        function.upload(function_id, code)
    else:
        function.unchanged_code(code)
    if settings.deadletter is not None:
        function.probe(settings.deadletter, environment)
    function.release(function_id)
    triggers = function.triggers(function_id)
    for timer in _timers(environment):
        function.timer(function_id, triggers, timer, target.request_timeout, environment["TIMER_TOKEN"])
    if wiring.gateway:
        gateway = Gateway(caller, clients.gateway, clients.gateway_models, clients.routes, clients.route_models)
        url = gateway.route(function_id, target.name, wiring.gateway)
    else:
        url = _trigger_url(triggers)
    if wiring.monitor:
        if url is None:
            raise DeployError(_NO_URL)
        webhook_ids: dict[str, str] = {}
        duplicates: dict[str, list[str]] = {}  # a callback URL kept: its duplicates
        for route in wiring.routes:
            name, route_at = webhook_name(target.name, route), route_url(url, route)
            webhook_ids[route], duplicates[webhook_ids[route]] = monitor.webhook(
                name, route_at, environment["CALLBACK_TOKEN"], wiring.repoint
            )
            if route != config.DEFAULT_ROUTE:
                caller.say(f"route {route!r}: callback URL {name!r} to {route_at}")
        _put_back_tags(monitor, backups, target.name, target.region)
        # As they are now, minutes after the check (the function's release waits): checked again, and
        # saved as they are just before the first write, so that the way back keeps what others changed.
        chosen = [(route, kind, monitor.read(kind, rule)) for route, kind, rule in chosen]
        _refuse(_refusals(monitor, chosen, webhook_ids), "no rule was written")
        every_duplicate = {d for ds in duplicates.values() for d in ds}
        calling_duplicates = [
            (kind, rule) for kind, rule in monitor.all_rules() if every_duplicate & set(rule.get("WebhookIds") or [])
        ]
        to_write = {(kind.what, kind.rule_id(rule)): (kind, rule) for kind, rule in calling_duplicates}
        to_write.update(
            {(k.what, k.rule_id(r)): (k, r) for route, k, r in chosen if not ticked(k, r, webhook_ids[route])}
        )
        if to_write:
            path = saved.save(backups, target.name, target.region, list(to_write.values()))
            caller.say(
                f"saved the {len(to_write)} rules it will write, whole, to {path} (the way back: "
                f"python -m deploy restore {path}; python -m deploy unwire takes the relay out of every rule)"
            )
            monitor.tagging = functools.partial(saved.note_tags, backups, path)
        for kept, copies in duplicates.items():  # every alarm delivered once: one callback URL in each rule
            for kind, rule in calling_duplicates:
                monitor.unwire(kind, rule, set(copies), instead=kept)
            if copies:
                monitor.delete_webhooks(copies)
        for route, kind, rule in chosen:
            monitor.tick(kind, rule, webhook_ids[route])
    return url


_NO_URL = (
    "Cloud Monitor needs the function's URL, and without --gateway the deploy finds none (no API gateway trigger): "
    "pass --gateway NAME (APIG_GATEWAY_NAME in CI), the API gateway in this region that routes the relay, or "
    "routes it from now on. Nothing was changed."
)


def _trigger_url(triggers: list[Any]) -> str | None:
    """The URL of an API gateway trigger the function has, if any."""
    return next((u for t in triggers for u in re.findall(r"https?://[^\s\"'\\]+", t.detailed_config or "")), None)


def _refusals(
    monitor: Monitor, chosen: list[tuple[str, Kind, dict[str, Any]]], webhook_ids: Mapping[str, str | None]
) -> list[str]:
    """Why each route's rules cannot take its callback URL."""
    return [
        refusal
        for route, webhook_id in webhook_ids.items()
        for refusal in monitor.refusals([(k, r) for rt, k, r in chosen if rt == route], webhook_id)
    ]


def _refuse_undeliverable(settings: config.Settings, wiring: Wiring) -> None:
    """Rules wired to a route the relay cannot deliver (it would answer each callback 404): refused
    before anything is written."""
    for route in wiring.routes:
        if settings.integration_key_for(route) is not None:
            continue
        if route == config.DEFAULT_ROUTE:
            named = ", ".join(sorted(settings.routes)) or "none"
            raise DeployError(
                "rules are wired to the default route ('/'), but the function has no FLASHDUTY_INTEGRATION_KEY: "
                "the relay would answer every callback there 404. Say which route feeds them (ROUTES names "
                f"{named}), e.g. --alarm-policies team-a=cpu-high, or set FLASHDUTY_INTEGRATION_KEY. Nothing "
                "was changed."
            )
        raise DeployError(
            f"rules are wired to route {route!r}, but ROUTES has no {route!r} (it has "
            f"{', '.join(sorted(settings.routes)) or 'none'}): the relay would answer every callback there 404. "
            "Add it to ROUTES, or wire those rules to a route it has. Nothing was changed."
        )


def _put_back_tags(monitor: Monitor, backups: saved.Folder, name: str, region: str) -> None:
    """What a run stopped between UpdateRule and TagResources took, as its file noted, put back first."""
    notes, refused = saved.tags_in_flight(backups, name, region)
    for line in refused:
        monitor.caller.say(line)
    for path, rule, tags in notes:
        monitor.put_back_tags(rule, tags)
        saved.note_tags(backups, path, rule, None)


def _refuse(refused: list[str], so_far: str) -> None:
    if refused:
        raise DeployError(
            f"{so_far}: ticking the relay in these rules would lose something:\n  - " + "\n  - ".join(refused)
        )


def _timers(environment: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """The drain's timer with a store; reconcile's with its key."""
    return [
        timer
        for timer, wanted in (
            (DRAIN_TIMER, environment.get("DEADLETTER_URI")),
            (RECONCILE_TIMER, environment.get("VOLCENGINE_ACCESS_KEY")),
        )
        if wanted
    ]


def _secure(environment: dict[str, str], target: Target, wiring: Wiring, out: TextIO) -> None:
    """No door left open: a public route gets a callback token, and timers a secret of their own,
    which starts only a bounded drain or reconcile (callback.Relay._timer) and never posts an alert."""
    if (wiring.gateway or wiring.monitor) and not environment.get("CALLBACK_TOKEN"):
        if "CALLBACK_TOKEN" in target.unset:
            raise DeployError("--unset CALLBACK_TOKEN with a public route would let anyone post alerts: drop it")
        environment["CALLBACK_TOKEN"] = secrets.token_urlsafe(32)
        # Printed once, here, and never logged: the webhook gets it, `python -m deploy test` needs it.
        print(
            f"- CALLBACK_TOKEN: none was set, so the function gets a new one: {environment['CALLBACK_TOKEN']} "
            "(shown only this once; Cloud Monitor's callback URL sends it)",
            file=out,
            flush=True,
        )
    if _timers(environment) and not environment.get("TIMER_TOKEN"):
        environment["TIMER_TOKEN"] = secrets.token_urlsafe(32)  # only the function and its timers hold it


def unwire(clients: argparse.Namespace, name: str, region: str, backups: saved.Folder, out: TextIO) -> int:
    """The relay's callback URL taken out of every rule that calls it; each saved first."""
    caller = Caller(clients.monitor_models.ApiException, out)
    monitor = Monitor(caller, clients.monitor, clients.monitor_models, clients.universal)
    webhooks = {str(w.id) for w in monitor.webhooks_named(name, routes=True)}  # every route's, duplicates too
    if not webhooks:
        caller.say(f"no callback URL named {name!r}: no rule calls the relay")
        return 0
    _put_back_tags(monitor, backups, name, region)
    calling = [(kind, rule) for kind, rule in monitor.all_rules() if webhooks & set(rule.get("WebhookIds") or [])]
    if calling:
        path = saved.save(backups, name, region, calling)
        caller.say(f"saved the {len(calling)} rules it will write, whole, to {path}")
        monitor.tagging = functools.partial(saved.note_tags, backups, path)
    for kind, rule in calling:
        monitor.unwire(kind, rule, webhooks)
    caller.say(
        f"{len(calling)} rules no longer call callback URL {name!r} ({', '.join(sorted(webhooks))}); the callback "
        "URL itself is kept (delete it in Cloud Monitor once nothing needs it)"
    )
    return 0


def restore(clients: argparse.Namespace, path: Path, backups: saved.Folder, force: bool, out: TextIO) -> int:
    """The rules in a saved file written back as they were; a rule changed since by anything but the
    relay's tick is named and left, with every other, unless forced."""
    caller = Caller(clients.monitor_models.ApiException, out)
    monitor = Monitor(caller, clients.monitor, clients.monitor_models, clients.universal)
    function, rules = saved.load(path)
    webhook = monitor.find_webhook(function)
    # A restore stopped between UpdateRule and TagResources noted the tags in flight: put back first.
    for _, rule, tags in saved.noted(path):
        monitor.put_back_tags(rule, tags)
        saved.note_tags(backups, path, rule, None)
    monitor.tagging = functools.partial(saved.note_tags, backups, path)
    changed = [
        f"{kind.name(rule)}: changed since it was saved ({', '.join(fields)})"
        for kind, rule in rules
        if (fields := monitor.changed_since(kind, rule, webhook.id if webhook else None))
    ]
    if changed and not force:
        raise DeployError(
            "nothing was restored: writing the saved copies would undo what others changed since:\n  - "
            + "\n  - ".join(changed)
            + "\nmake those changes again after restoring, or pass --force to write the saved copies over them"
        )
    for kind, rule in rules:
        monitor.restore(kind, rule)
    return 0


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
    for what, feeds in (("event rules", wiring.event_rules), ("alarm policies", wiring.alarm_policies)):
        for route, chosen in (feeds or {}).items():
            callback = (
                "it" if route == config.DEFAULT_ROUTE else f"route {route!r}'s own ({target.name}.{route}, /{route})"
            )
            steps.append(f"tick {callback} in the {what} {', '.join(chosen)}, keeping everything else they have")
    return steps


COMMANDS = """commands:
  python -m deploy [options]                  deploy (this page's options)
  python -m deploy test --url URL [--token T] a test event and its Ok through the deployed relay
  python -m deploy unwire [--name N]          take the relay's callback URL out of every rule that calls it
  python -m deploy restore FILE [--force]     write the rules saved in FILE back as they were
each run that writes rules first saves them whole in --backup-dir (default deploy-backups/) and prints the file"""


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:
        tester = argparse.ArgumentParser(
            prog="python -m deploy test", description="send a test event and its Ok through the deployed relay"
        )
        tester.add_argument("--url", required=True, help="the callback URL (what Cloud Monitor posts to)")
        tester.add_argument(
            "--route",
            action="append",
            default=[],
            metavar="NAME",
            help="test this route's callback URL (URL/NAME; 'default' is URL itself); repeat for each route",
        )
        tester.add_argument("--token", default=shell("CALLBACK_TOKEN"), help="default: $CALLBACK_TOKEN")
        test_args = tester.parse_args(argv[1:])
        routes = test_args.route or [config.DEFAULT_ROUTE]
        failed = [r for r in routes if wiring_test(route_url(test_args.url, r), test_args.token, out) != 0]
        if len(routes) > 1:
            print(f"routes failing: {', '.join(failed)}" if failed else "every route works", file=out)
        return 1 if failed else 0
    if argv[:1] in (["unwire"], ["restore"]):
        return _way_back(argv, out)
    parser = _parser("python -m deploy", (deploy.__doc__ or "").splitlines()[0])
    parser.epilog = COMMANDS
    parser.add_argument("--version", action="version", version=f"volc-flashduty-relay {VERSION}")
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, help="veFaaS web-server runtime")
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument(
        "--timeout",
        type=int,
        default=REQUEST_TIMEOUT,
        help=f"request timeout, seconds (default {REQUEST_TIMEOUT}): a timer run's budget, 5 s inside it",
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
        default=shell("APIG_GATEWAY_NAME"),
        metavar="NAME",
        help="route this API gateway (an existing one, in the region) to the function: its URL is the callback "
        "URL (default: $APIG_GATEWAY_NAME)",
    )
    for option, variable, what in (
        ("--event-rules", "DEPLOY_EVENT_RULES", "event rules"),
        ("--alarm-policies", "DEPLOY_ALARM_POLICIES", "alarm policies"),
    ):
        parser.add_argument(
            option,
            action="append",
            metavar="[ROUTE=]ID|NAME,...|all",
            help=f"tick the relay's callback URL in these Cloud Monitor {what}; ROUTE= (a ROUTES name) ticks that "
            f"route's own callback URL instead; repeat for each route (default: ${variable}, groups separated "
            "by ';')",
        )
    parser.add_argument(
        "--repoint-callback-url",
        action="store_true",
        help="point a callback URL of the relay's name that calls another URL (one made by hand) at the relay",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what would be refused; call nothing")
    args = parser.parse_args(argv)

    low, found = minimum_python(), runtime_python(args.runtime)
    if found is None or found < low:
        parser.exit(2, f"deploy: runtime {args.runtime} runs Python older than the {low[0]}.{low[1]} the code needs\n")
    names = (*config.VARIABLES, *STORE_CREDENTIALS)
    environment = {name: value for name in names if (value := shell(name))}
    # Reconcile's key reaches the function only as given for it: never this shell's deploying key.
    reconcile_key = {to: value for given, to in RECONCILE_CREDENTIALS.items() if (value := shell(given))}
    if reconcile_key:
        if len(reconcile_key) < 2:
            parser.exit(2, "deploy: set both RECONCILE_ACCESS_KEY and RECONCILE_SECRET_KEY (a read-only key)\n")
        if reconcile_key["VOLCENGINE_ACCESS_KEY"] == shell("VOLCENGINE_ACCESS_KEY"):
            parser.exit(
                2,
                "deploy: RECONCILE_ACCESS_KEY is the deploying key: give reconcile a key of its own, "
                "allowed only Cloud Monitor's ListWebhooks, ListRules, ListAlertGroup, ListEventRules and ListEvents\n",
            )
        environment.update(reconcile_key, VOLCENGINE_REGION=args.region, RECONCILE_WEBHOOK=args.name)
        environment.update({name: value for name in RECONCILE_SETTINGS if (value := shell(name))})
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
    try:
        wiring = Wiring(
            args.gateway,
            _feeds(args.event_rules, shell("DEPLOY_EVENT_RULES")),
            _feeds(args.alarm_policies, shell("DEPLOY_ALARM_POLICIES")),
            args.repoint_callback_url,
        )
    except argparse.ArgumentTypeError as error:
        parser.exit(2, f"deploy: {error}\n")
    code = zipped()
    if args.dry_run:
        print(f"would deploy volc-flashduty-relay {VERSION} ({len(code)} bytes) to veFaaS via {endpoint}:", file=out)
        for step in plan(target, wiring):
            print(f"- {step}", file=out)
        refusals = _would_refuse(target)
        for refusal in refusals:
            print(f"would refuse: {refusal}", file=out)
        if not refusals:
            print("nothing here would be refused (what the function already has is read by the real deploy)", file=out)
        return 0
    clients = _clients(parser, args.region, endpoint)
    try:
        with _lease(clients, args.runtime, out).held(args.lease_wait):
            url = run(clients, target, wiring, code, _folder(args.backup_dir), out)
    except DeployError as error:
        parser.exit(1, f"deploy: {error}\n")
    if url:
        print(f"\ndeployed. Callback URL for Cloud Monitor: {url}", file=out)
        routes = [r for r in wiring.routes if r != config.DEFAULT_ROUTE]
        for route in routes:
            print(f"route {route!r}: {route_url(url, route)}", file=out)
        tests = "".join(f" --route {r}" for r in wiring.routes) if routes else ""
        print(f"test it: python -m deploy test --url {url}{tests}", file=out)
    else:
        print(
            "\ndeployed. The function has no URL yet: run this again with --gateway NAME (an API gateway in this "
            "region) to route one to it.",
            file=out,
        )
    return 0


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every command that calls Volcengine shares."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default=shell("VEFAAS_FUNCTION_NAME") or "volc-flashduty-relay")
    parser.add_argument("--region", default=shell("VOLCENGINE_REGION") or "cn-beijing")
    parser.add_argument(
        "--backup-dir",
        type=Path,
        default=Path(shell("DEPLOY_BACKUP_DIR") or saved.DEFAULT_DIRECTORY),
        help="where the rules it writes are saved first (default: $DEPLOY_BACKUP_DIR, else deploy-backups)",
    )
    parser.add_argument(
        "--lease-wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long to wait for another deploy (unwire, restore) to finish (its lease) before refusing",
    )
    return parser


def _way_back(argv: list[str], out: TextIO) -> int:
    """`unwire` and `restore`: what the deploy did to Cloud Monitor's rules, undone."""
    command = argv[0]
    if command == "unwire":
        parser = _parser("python -m deploy unwire", "take the relay's callback URL out of every rule that calls it")
    else:
        parser = _parser("python -m deploy restore", "write the rules saved in FILE back as they were")
        parser.add_argument("file", type=Path, metavar="FILE", help="a file the deploy (or unwire) saved")
        parser.add_argument(
            "--force", action="store_true", help="write rules changed since the save too, undoing those changes"
        )
    args = parser.parse_args(argv[1:])
    try:
        clients = _clients(parser, args.region, volcengine_api.endpoint(os.environ))
        with _lease(clients, DEFAULT_RUNTIME, out).held(args.lease_wait):
            if command == "unwire":
                return unwire(clients, args.name, args.region, _folder(args.backup_dir), out)
            return restore(clients, args.file, _folder(args.file.parent), args.force, out)
    except (DeployError, ValueError) as error:
        parser.exit(1, f"deploy {command}: {error}\n")


def _folder(path: Path) -> saved.Folder:
    """The folder of saved rules, its files signed with a key from the deploying secret key (_clients
    checked it is set)."""
    return saved.Folder.of(path, shell("VOLCENGINE_SECRET_KEY") or "")


def _lease(clients: argparse.Namespace, runtime: str, out: TextIO) -> Lease:
    return Lease(Caller(clients.faas_models.ApiException, out), clients.faas, clients.faas_models, runtime)


def _clients(parser: argparse.ArgumentParser, region: str, endpoint: str) -> argparse.Namespace:
    access_key, secret_key = shell("VOLCENGINE_ACCESS_KEY"), shell("VOLCENGINE_SECRET_KEY")
    if not (access_key and secret_key):
        parser.exit(
            2, "deploy: set VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY (an access key allowed to use veFaaS)\n"
        )
    try:
        return sdk_clients(access_key, secret_key, region, endpoint)
    except ImportError as error:
        parser.exit(2, f"deploy: {_NO_SDK} ({error.name} is missing)\n")


_NO_SDK = "the Volcengine SDKs are not installed: pip install -r requirements-deploy.txt"


def _would_refuse(target: Target) -> list[str]:
    """What the real deploy would refuse, as far as this shell tells (the function may have more)."""
    refusals = []
    for module in (
        "volcenginesdkvefaas",
        "volcenginesdkapig",
        "volcenginesdkapig20221112",
        "volcenginesdkcloudmonitor",
    ):
        if importlib.util.find_spec(module) is None:
            refusals.append(f"{_NO_SDK} ({module} is missing)")
            break
    environment = target.wanted_environment({})
    try:
        refuse_what_cannot_work(config.load(environment), environment)
    except DeployError as error:
        refusals.append(f"{error} (unless the function already has what is missing)")
    if not (shell("VOLCENGINE_ACCESS_KEY") and shell("VOLCENGINE_SECRET_KEY")):
        refusals.append("VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY (the deploying key) are not set")
    return refusals


def _feeds(given: list[str] | None, variable: str | None) -> dict[str, tuple[str, ...]] | None:
    """Which rules feed which route: `[ROUTE=]ids or names` groups (from the options, else the variable,
    groups separated by ';'); without ROUTE=, the default route."""
    groups = given if given is not None else variable.split(";") if variable else None
    if groups is None:
        return None
    feeds: dict[str, tuple[str, ...]] = {}
    for group in (g for g in groups if g.strip()):
        route, _, names = group.rpartition("=")
        route = route.strip() or config.DEFAULT_ROUTE
        if not config.ROUTE_NAME.match(route):
            raise argparse.ArgumentTypeError(f"{route!r} is not a route name (a ROUTES name, or default)")
        feeds[route] = _names(",".join((*feeds.get(route, ()), names)))
    if not feeds:
        raise argparse.ArgumentTypeError("give ids or names, comma-separated, or all")
    return feeds


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names or ("all" in names and len(names) > 1):
        raise argparse.ArgumentTypeError("give ids or names, comma-separated, or all")
    return names
