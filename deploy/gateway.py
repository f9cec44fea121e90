"""API gateway: a route from an existing gateway to the function (VeFaas upstream, service, route),
whose public domain is the callback URL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.calls import Caller, DeployError

# The route to the function: every path (the relay routes ROUTES itself), callbacks and health checks.
ROUTE_MATCH = {"match_type": "Prefix", "match_content": "/", "method": ["GET", "POST"]}


@dataclass
class Gateway:
    """The route's steps: gateways, upstreams and services (2021-03-03: api, models), routes (2022-11-12)."""

    caller: Caller
    api: Any
    models: Any
    routes: Any
    route_models: Any

    def route(self, function_id: str, name: str, gateway_name: str) -> str | None:
        """A route from the named API gateway to the function: VeFaas upstream, service, route; its URL."""
        api, models = self.api, self.models
        gateway = self._named(
            "list API gateways",
            gateway_name,
            lambda: (
                api.list_gateways(
                    models.ListGatewaysRequest(
                        filter=models.FilterForListGatewaysInput(name=gateway_name), page_size=100
                    )
                ).items
            ),
        )
        if gateway is None:
            raise DeployError(
                f"API gateway {gateway_name!r} is not in this region: create one in the API gateway console "
                "(it is billed as an instance), or name an existing one with --gateway."
            )
        self.caller.say(f"API gateway {gateway_name!r}: found ({gateway.id})")
        upstream_id = self._upstream(gateway.id, function_id, name)
        service = self._service(gateway.id, name)
        self._route_to(service.id, upstream_id, name)
        domains = sorted(service.domains or [], key=lambda d: "public" not in str(d.type).lower())
        if not domains:
            self.caller.say(
                f"service {name!r}: no domain yet (the gateway is still assigning it): run the deploy again"
            )
            return None
        domain = domains[0].domain
        scheme = "https" if "HTTPS" in (service.protocol or []) else "http"
        return domain if "://" in domain else f"{scheme}://{domain}/"

    def _named(self, what: str, name: str, items: Callable[[], Any]) -> Any:
        """The item called exactly `name` among those a list call gives (its name filter), or None."""
        return next((item for item in self.caller.call(what, items) or [] if item.name == name), None)

    def _upstream(self, gateway_id: str, function_id: str, name: str) -> str:
        api, models = self.api, self.models

        def find() -> Any:
            return self._named(
                "list upstreams",
                name,
                lambda: (
                    api.list_upstreams(
                        models.ListUpstreamsRequest(
                            gateway_id=gateway_id, filter=models.FilterForListUpstreamsInput(name=name), page_size=100
                        )
                    ).items
                ),
            )

        found = find()
        if found is None:
            upstream_id: str = self.caller.write(
                "create upstream",
                lambda: (
                    api.create_upstream(
                        models.CreateUpstreamRequest(
                            gateway_id=gateway_id, name=name, **_upstream_fields(models, "Create", function_id)
                        )
                    ).id
                ),
                adopt=lambda: getattr(find(), "id", None),
            )
            self.caller.say(f"upstream {name!r}: created ({upstream_id}), to function {function_id}")
            return upstream_id
        spec = found.upstream_spec.ve_faas if found.upstream_spec else None
        if spec is not None and spec.function_id == function_id:
            self.caller.say(f"upstream {name!r}: found ({found.id}), to this function")
            return str(found.id)
        self.caller.write(
            "update upstream",
            lambda: api.update_upstream(
                models.UpdateUpstreamRequest(id=found.id, name=name, **_upstream_fields(models, "Update", function_id))
            ),
        )
        self.caller.say(f"upstream {name!r}: updated ({found.id}), now to function {function_id}")
        return str(found.id)

    def _service(self, gateway_id: str, name: str) -> Any:
        api, models = self.api, self.models

        def find() -> Any:
            return self._named(
                "list gateway services",
                name,
                lambda: (
                    api.list_gateway_services(
                        models.ListGatewayServicesRequest(
                            gateway_id=gateway_id,
                            filter=models.FilterForListGatewayServicesInput(name=name),
                            page_size=100,
                        )
                    ).items
                ),
            )

        found = find()
        if found is not None:
            self.caller.say(f"service {name!r}: found ({found.id})")
            return found
        service_id = self.caller.write(
            "create gateway service",
            lambda: (
                api.create_gateway_service(
                    models.CreateGatewayServiceRequest(
                        gateway_id=gateway_id,
                        service_name=name,
                        protocol=["HTTP", "HTTPS"],
                        # The relay checks CALLBACK_TOKEN itself; the gateway's own auth would refuse Cloud Monitor.
                        auth_spec=models.AuthSpecForCreateGatewayServiceInput(enable=False),
                    )
                ).id
            ),
            adopt=lambda: getattr(find(), "id", None),
        )
        self.caller.say(f"service {name!r}: created ({service_id})")
        return find()

    def _route_to(self, service_id: str, upstream_id: str, name: str) -> None:
        routes, models = self.routes, self.route_models

        def find() -> Any:
            return self._named(
                "list routes",
                name,
                lambda: (
                    routes.list_routes(
                        models.ListRoutesRequest(
                            service_id=service_id, filter=models.FilterForListRoutesInput(name=name), page_size=100
                        )
                    ).items
                ),
            )

        found = find()
        wanted = {**ROUTE_MATCH, "upstream_id": upstream_id}
        if found is None:
            self.caller.write(
                "create route",
                lambda: routes.create_route(
                    models.CreateRouteRequest(
                        service_id=service_id, name=name, **_route_fields(models, "Create", upstream_id)
                    )
                ),
                adopt=find,
            )
            self.caller.say(f"route {name!r}: created, POST and GET / to upstream {upstream_id}")
            return
        rule = found.match_rule
        have = {
            "match_type": rule.path.match_type if rule and rule.path else None,
            "match_content": rule.path.match_content if rule and rule.path else None,
            "method": sorted(rule.method or []) if rule else [],
            "upstream_id": next((u.upstream_id for u in found.upstream_list or []), None),
        }
        if have == wanted and len(found.upstream_list) == 1 and found.enable:
            self.caller.say(f"route {name!r}: unchanged")
            return
        self.caller.write(
            "update route",
            lambda: routes.update_route(
                models.UpdateRouteRequest(id=found.id, name=name, **_route_fields(models, "Update", upstream_id))
            ),
        )
        self.caller.say(f"route {name!r}: updated, POST and GET / to upstream {upstream_id}")


def _upstream_fields(models: Any, verb: str, function_id: str) -> dict[str, Any]:
    """An upstream to the function, as CreateUpstream and UpdateUpstream (verb) both take it."""
    spec = getattr(models, f"UpstreamSpecFor{verb}UpstreamInput")
    function = getattr(models, f"VeFaasFor{verb}UpstreamInput")
    return {"source_type": "VeFaas", "upstream_spec": spec(ve_faas=function(function_id=function_id))}


def _route_fields(models: Any, verb: str, upstream_id: str) -> dict[str, Any]:
    """The relay's route (ROUTE_MATCH, to one upstream), as CreateRoute and UpdateRoute (verb) both take it."""
    path = getattr(models, f"PathFor{verb}RouteInput")(
        match_type=ROUTE_MATCH["match_type"], match_content=ROUTE_MATCH["match_content"]
    )
    return {
        "enable": True,
        "match_rule": getattr(models, f"MatchRuleFor{verb}RouteInput")(method=ROUTE_MATCH["method"], path=path),
        "upstream_list": [getattr(models, f"UpstreamListFor{verb}RouteInput")(upstream_id=upstream_id, weight=100)],
    }
