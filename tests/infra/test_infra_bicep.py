"""Static checks of infra/*.bicep: every file parses (pycep) and the deploy invariants of issue 9 hold.

No Bicep compiler or Azure is reachable here, so these tests read the parsed templates: no keys or
connection strings, local auth off, every role assignment present with the right role-definition id and
the narrowest scope, KEDA and the app authenticate as the user-assigned identity, and the scaling and
shutdown numbers stay tied to the worker's settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MODULES = INFRA / "modules"

# Built-in role definition ids (research/anchors.md §4.2).
SB_RECEIVER = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"
SB_SENDER = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"
SB_OWNER = "090c5cfd-751d-490a-894a-3ce6f1109419"  # KEDA: queue runtime properties need Manage
BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
BLOB_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
COGNITIVE_SERVICES_USER = "a97b65f3-24c7-4388-baec-2e87135dc908"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
ALLOWED_ROLES = {
    SB_RECEIVER,
    SB_SENDER,
    SB_OWNER,
    BLOB_READER,
    BLOB_CONTRIBUTOR,
    COGNITIVE_SERVICES_USER,
    ACR_PULL,
    METRICS_PUBLISHER,
}

QUEUE = "Microsoft.ServiceBus/namespaces/queues"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
COGNITIVE = "Microsoft.CognitiveServices/accounts"
REGISTRY = "Microsoft.ContainerRegistry/registries"
APP_INSIGHTS = "Microsoft.Insights/components"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"

# ---------------------------------------------------------------------------------------------------
# parsing helpers
# ---------------------------------------------------------------------------------------------------


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def parsed(path: Path) -> dict[str, Any]:
    result = BicepParser().parse(file_path=path)
    return dict(result)


def module(name: str) -> dict[str, Any]:
    return parsed(MODULES / f"{name}.bicep")


def main() -> dict[str, Any]:
    return parsed(INFRA / "main.bicep")


def unwrap(config: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """A conditional resource/module parses as {condition, config}: return (body, condition or None)."""
    if set(config) == {"condition", "config"}:
        return config["config"], config["condition"]
    return config, None


def render(expr: Any) -> str:
    """Render a pycep expression back to compact Bicep-like text, for readable assertions."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, bool):
        return "true" if expr else "false"
    if isinstance(expr, int | float):
        return str(expr)
    if isinstance(expr, list):
        return "[" + ", ".join(render(item) for item in expr) + "]"
    if isinstance(expr, dict) and "operator" in expr:
        op = expr["operator"]
        kind, operands = op["type"], op["operands"]
        if kind == "property_accessor":
            return f"{render(operands['operand_1'])}.{render(operands['operand_2'])}"
        if kind == "nested_resource_accessor":
            return f"{render(operands['operand_1'])}::{render(operands['operand_2'])}"
        if kind == "index_accessor":
            return f"{render(operands['operand_1'])}[{render(operands['operand_2'])}]"
        if kind == "add":
            return f"{render(operands['operand_1'])} + {render(operands['operand_2'])}"
        if kind == "not":
            return f"!{render(operands['bool_value'])}"
        if kind == "conditional":
            return (
                f"{render(operands['condition'])} ? {render(operands['true_value'])}"
                f" : {render(operands['false_value'])}"
            )
        return f"{kind}(" + ", ".join(render(v) for v in operands.values()) + ")"
    if isinstance(expr, dict) and "function" in expr:
        fn = expr["function"]
        args = [render(v) for v in (fn.get("parameters") or {}).values() if v is not None]
        return f"{fn['type']}(" + ", ".join(args) + ")"
    if isinstance(expr, dict):
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in expr.items()) + "}"
    return repr(expr)


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@dataclass(frozen=True)
class Resource:
    file: str
    symbol: str
    type: str
    body: dict[str, Any]
    condition: Any
    existing: bool


def resources(doc: dict[str, Any], file: str = "") -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    for symbol, attrs in doc.get("resources", {}).items():
        body, condition = unwrap(attrs["config"])
        out[symbol] = Resource(file, symbol, attrs["type"], body, condition, attrs["existing"])
    return out


def all_resources() -> list[Resource]:
    found: list[Resource] = []
    for path in bicep_files():
        found.extend(resources(parsed(path), path.relative_to(INFRA).as_posix()).values())
    return found


def of_type(doc: dict[str, Any], type_: str) -> list[Resource]:
    """Resources of a type that the file deploys (`existing` references left out)."""
    return [r for r in resources(doc).values() if r.type == type_ and not r.existing]


def one(doc: dict[str, Any], type_: str) -> Resource:
    found = of_type(doc, type_)
    assert len(found) == 1, f"expected exactly one {type_}, found {[r.symbol for r in found]}"
    return found[0]


@dataclass(frozen=True)
class RoleAssignment:
    file: str
    symbol: str
    role: str
    scope_symbol: str
    scope_type: str
    scope_name: str
    principal: str
    principal_type: str


def role_assignments() -> list[RoleAssignment]:
    found: list[RoleAssignment] = []
    for path in bicep_files():
        doc = parsed(path)
        by_symbol = resources(doc)
        for res in by_symbol.values():
            if res.type != ROLE_ASSIGNMENT:
                continue
            props = res.body["properties"]
            fn = props["roleDefinitionId"]["function"]
            assert fn["type"] == "subscription_resource_id", f"{res.symbol}: not a built-in role id"
            assert fn["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
            scope = res.body.get("scope")
            assert isinstance(scope, str), f"{path.name}:{res.symbol} has no resource scope (RG-wide)"
            target = by_symbol[scope]
            found.append(
                RoleAssignment(
                    file=path.relative_to(INFRA).as_posix(),
                    symbol=res.symbol,
                    role=fn["parameters"]["resource_name_1"],
                    scope_symbol=scope,
                    scope_type=target.type,
                    scope_name=render(target.body["name"]),
                    principal=render(props["principalId"]),
                    principal_type=render(props["principalType"]),
                )
            )
    return found


def worker_roles() -> list[RoleAssignment]:
    return [ra for ra in role_assignments() if ra.principal == "workerPrincipalId"]


def env_of(container: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    """Container env as {name: value expr} (resolves `concat(var, var)` and conditional lists)."""
    env: dict[str, Any] = {}

    def collect(expr: Any) -> None:
        if isinstance(expr, str) and expr in variables:
            collect(variables[expr]["value"])
        elif isinstance(expr, list):
            for item in expr:
                env[item["name"]] = item.get("value", {"secretRef": item.get("secretRef")})
        elif isinstance(expr, dict) and "function" in expr and expr["function"]["type"] == "concat":
            for arg in expr["function"]["parameters"].values():
                collect(arg)
        elif isinstance(expr, dict) and expr.get("operator", {}).get("type") == "conditional":
            collect(expr["operator"]["operands"]["true_value"])
            collect(expr["operator"]["operands"]["false_value"])
        else:
            raise AssertionError(f"unexpected env expression: {render(expr)}")

    collect(container["env"])
    return env


def param_default(doc: dict[str, Any], name: str) -> Any:
    return doc["parameters"][name]["default"]


def decorator(doc: dict[str, Any], param: str, kind: str) -> Any:
    for deco in doc["parameters"][param]["decorators"]:
        if deco["type"] == kind:
            return deco["argument"]
    raise AssertionError(f"param {param} has no @{kind}")


# ---------------------------------------------------------------------------------------------------
# every file parses
# ---------------------------------------------------------------------------------------------------


def test_infra_has_main_and_modules() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in bicep_files()}
    assert "main.bicep" in names
    assert {
        "modules/identity.bicep",
        "modules/monitoring.bicep",
        "modules/registry.bicep",
        "modules/servicebus.bicep",
        "modules/storage.bicep",
        "modules/aiservices.bicep",
        "modules/containerapps-env.bicep",
        "modules/worker-app.bicep",
    } <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_parses(path: Path) -> None:
    doc = parsed(path)
    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares nothing"
    # Each file says what it owns in a leading comment.
    assert path.read_text().startswith("//")


def test_every_local_module_path_exists() -> None:
    for path in bicep_files():
        for name, attrs in parsed(path).get("modules", {}).items():
            assert attrs["type"] == "local", f"{path.name}:{name} uses a remote module"
            assert (path.parent / attrs["detail"]["path"]).is_file(), f"{path.name}:{name} -> missing file"


def test_module_params_exist_in_the_module() -> None:
    """Every param main.bicep passes is declared by the module, and every required one is passed."""
    for name, attrs in main()["modules"].items():
        body, _ = unwrap(attrs["config"])
        target = parsed(INFRA / attrs["detail"]["path"])
        declared = target.get("parameters", {})
        passed = set(body["params"])
        assert passed <= set(declared), f"module {name}: unknown params {passed - set(declared)}"
        required = {p for p, a in declared.items() if a["default"] is None}
        assert required <= passed, f"module {name}: missing params {required - passed}"


def test_parameters_file_matches_main() -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = main()["parameters"]
    assert set(params) <= set(declared), set(params) - set(declared)
    required = {p for p, a in declared.items() if a["default"] is None}
    assert required <= set(params), required - set(params)
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert params["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert params["workerExists"]["value"].startswith("${SERVICE_WORKER_RESOURCE_EXISTS")


# ---------------------------------------------------------------------------------------------------
# no keys, no connection strings
# ---------------------------------------------------------------------------------------------------

KEY_FUNCTIONS = {
    "list_keys",
    "list_account_sas",
    "list_service_sas",
    "list_secrets",
    "list_connection_strings",
}
KEY_TEXT = re.compile(
    r"listKeys|listConnectionStrings|listSecrets|listAccountSas|listServiceSas|primaryKey|secondaryKey|"
    r"SharedAccessKey|AccountKey=|primarySharedKey|authorizationRules|adminUserEnabled:\s*true|"
    r"SERVICEBUS_CONNECTION_STRING|STORAGE_CONNECTION_STRING|VOICELIVE_API_KEY",
    re.IGNORECASE,
)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_no_keys_or_connection_strings(path: Path) -> None:
    code = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("//"))
    assert not KEY_TEXT.findall(code), f"{path.name}: key material referenced"
    for node in walk(parsed(path)):
        if isinstance(node, dict) and "function" in node and isinstance(node["function"], dict):
            assert node["function"]["type"] not in KEY_FUNCTIONS, f"{path.name}: {render(node)}"
        if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
            text = render(node)
            assert not re.search(r"list\w*\(", text), f"{path.name}: {text}"
    for res in resources(parsed(path)).values():
        assert not res.type.endswith("/authorizationRules"), f"{path.name}: SAS rule {res.symbol}"


def test_only_app_insights_connection_string_flows_and_as_a_secret() -> None:
    """The one 'connection string' is App Insights' (not a key; ingestion needs Entra, local auth off)."""
    doc = module("worker-app")
    app = one(doc, "Microsoft.App/containerApps")
    container = app.body["properties"]["template"]["containers"][0]
    env = env_of(container, doc["variables"])
    names_with_secrets = {n for n in env if re.search(r"CONNECTION_STRING|KEY|PASSWORD|SECRET", n)}
    assert names_with_secrets == {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
    assert env["APPLICATIONINSIGHTS_CONNECTION_STRING"] == {"secretRef": "appinsights-connection-string"}
    secrets = app.body["properties"]["configuration"]["secrets"]
    assert [s["name"] for s in secrets] == ["appinsights-connection-string"]
    assert {"type": "secure"} in doc["parameters"]["appInsightsConnectionString"]["decorators"]
    # Entra ingestion with the worker identity (read by azure-monitor-opentelemetry-exporter).
    assert render(env["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]) == (
        "Authorization=AAD;ClientId=${identityClientId}"
    )


# ---------------------------------------------------------------------------------------------------
# local auth off
# ---------------------------------------------------------------------------------------------------


def test_service_bus_local_auth_off_and_tls12() -> None:
    ns = one(module("servicebus"), "Microsoft.ServiceBus/namespaces")
    assert ns.body["properties"]["disableLocalAuth"] is True
    assert ns.body["properties"]["minimumTlsVersion"] == "1.2"
    assert ns.body["sku"]["name"] in {"Standard", "Premium"}  # duplicate detection


def test_storage_shared_key_off_tls12_no_public_blobs() -> None:
    account = one(module("storage"), "Microsoft.Storage/storageAccounts")
    props = account.body["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    containers = of_type(module("storage"), CONTAINER)
    assert {render(c.body["name"]) for c in containers} == {"inputContainerName", "resultsContainerName"}
    assert all(c.body["properties"]["publicAccess"] == "None" for c in containers)


def test_aiservices_local_auth_off_with_custom_subdomain() -> None:
    account = one(module("aiservices"), COGNITIVE)
    assert account.body["kind"] == "AIServices"
    assert account.body["properties"]["disableLocalAuth"] is True
    assert render(account.body["properties"]["customSubDomainName"]) == "name"


def test_monitoring_local_auth_off_and_workspace_based() -> None:
    doc = module("monitoring")
    appi = one(doc, APP_INSIGHTS)
    workspace = one(doc, "Microsoft.OperationalInsights/workspaces")
    assert appi.body["properties"]["DisableLocalAuth"] is True
    assert render(appi.body["properties"]["WorkspaceResourceId"]) == f"{workspace.symbol}.id"
    assert workspace.body["properties"]["features"]["disableLocalAuth"] is True


def test_registry_has_no_admin_user_and_no_anonymous_pull() -> None:
    registry = one(module("registry"), REGISTRY)
    assert registry.body["properties"]["adminUserEnabled"] is False
    assert registry.body["properties"]["anonymousPullEnabled"] is False


def test_environment_logs_without_workspace_key() -> None:
    doc = module("containerapps-env")
    env = one(doc, "Microsoft.App/managedEnvironments")
    assert env.body["properties"]["appLogsConfiguration"] == {"destination": "azure-monitor"}
    diag = one(doc, "Microsoft.Insights/diagnosticSettings")
    assert diag.body["scope"] == env.symbol


# ---------------------------------------------------------------------------------------------------
# role assignments: present, right id, narrowest scope
# ---------------------------------------------------------------------------------------------------


def test_only_known_roles_and_always_a_resource_scope() -> None:
    assignments = role_assignments()
    assert assignments
    for ra in assignments:
        assert ra.role in ALLOWED_ROLES, f"{ra.file}:{ra.symbol} grants {ra.role}"
        # Never the namespace, the storage account, the resource group or the subscription.
        assert ra.scope_type not in {
            "Microsoft.ServiceBus/namespaces",
            "Microsoft.Storage/storageAccounts",
            "Microsoft.Resources/resourceGroups",
        }, f"{ra.file}:{ra.symbol} scoped to {ra.scope_type}"


def test_no_role_assignments_in_main() -> None:
    # main.bicep is subscription-scoped: a role assignment there would cover the whole subscription.
    assert not of_type(main(), ROLE_ASSIGNMENT)


EXPECTED_WORKER_ROLES = {
    # (role, scope type, scope resource name expr, file)
    (SB_RECEIVER, QUEUE, "jobsQueueName", "modules/servicebus.bicep"),
    (SB_SENDER, QUEUE, "jobsQueueName", "modules/servicebus.bicep"),
    (SB_SENDER, QUEUE, "resultsQueueName", "modules/servicebus.bicep"),
    (SB_OWNER, QUEUE, "jobsQueueName", "modules/servicebus.bicep"),
    (BLOB_READER, CONTAINER, "inputContainerName", "modules/storage.bicep"),
    (BLOB_CONTRIBUTOR, CONTAINER, "resultsContainerName", "modules/storage.bicep"),
    (COGNITIVE_SERVICES_USER, COGNITIVE, "name", "modules/aiservices.bicep"),
    (COGNITIVE_SERVICES_USER, COGNITIVE, "accountName", "modules/voicelive-role.bicep"),
    (ACR_PULL, REGISTRY, "name", "modules/registry.bicep"),
    (METRICS_PUBLISHER, APP_INSIGHTS, "appInsightsName", "modules/monitoring.bicep"),
}


def test_worker_identity_gets_exactly_the_least_privilege_roles() -> None:
    got = {(ra.role, ra.scope_type, ra.scope_name, ra.file) for ra in worker_roles()}
    assert got == EXPECTED_WORKER_ROLES
    assert all(ra.principal_type == "ServicePrincipal" for ra in worker_roles())


def test_worker_never_writes_input_or_reads_other_containers() -> None:
    for ra in worker_roles():
        if ra.scope_type == CONTAINER and ra.scope_name == "inputContainerName":
            assert ra.role == BLOB_READER


def test_deploying_user_roles_are_optional_and_narrow() -> None:
    user = [ra for ra in role_assignments() if ra.principal == "userPrincipalId"]
    got = {(ra.role, ra.scope_type, ra.scope_name) for ra in user}
    assert got == {
        (SB_SENDER, QUEUE, "jobsQueueName"),
        (SB_RECEIVER, QUEUE, "jobsQueueName"),
        (SB_RECEIVER, QUEUE, "resultsQueueName"),
        (BLOB_CONTRIBUTOR, CONTAINER, "inputContainerName"),
        (BLOB_READER, CONTAINER, "resultsContainerName"),
        (COGNITIVE_SERVICES_USER, COGNITIVE, "name"),
        (METRICS_PUBLISHER, APP_INSIGHTS, "appInsightsName"),
    }
    for ra in user:
        assert ra.principal_type == "userPrincipalType"
        res = resources(parsed(INFRA / ra.file))[ra.symbol]
        assert res.condition is not None and "empty(userPrincipalId)" in render(res.condition)


def test_role_assignment_names_are_deterministic_guids() -> None:
    for path in bicep_files():
        for res in of_type(parsed(path), ROLE_ASSIGNMENT):
            name = res.body["name"]
            assert name["function"]["type"] == "guid", f"{path.name}:{res.symbol}"
            args = [render(v) for v in name["function"]["parameters"].values() if v is not None]
            assert args[0] == f"{res.body['scope']}.id", f"{path.name}:{res.symbol} guid not seeded by scope"


def test_main_wires_the_worker_identity_into_every_role_module() -> None:
    for name, attrs in main()["modules"].items():
        body, _ = unwrap(attrs["config"])
        if "workerPrincipalId" in body["params"]:
            assert render(body["params"]["workerPrincipalId"]) == "identity.outputs.principalId", name
        if "userPrincipalId" in body["params"]:
            assert render(body["params"]["userPrincipalId"]) == "principalId", name
    modules_with_roles = {
        name
        for name, attrs in main()["modules"].items()
        if of_type(parsed(INFRA / attrs["detail"]["path"]), ROLE_ASSIGNMENT)
    }
    assert modules_with_roles == {
        "monitoring",
        "registry",
        "servicebus",
        "storage",
        "aiservices",
        "existingVoiceLiveRole",
    }


# ---------------------------------------------------------------------------------------------------
# the worker app: identity, KEDA, grace period, probes, settings
# ---------------------------------------------------------------------------------------------------


def worker_app() -> Resource:
    return one(module("worker-app"), "Microsoft.App/containerApps")


def test_app_runs_as_the_user_assigned_identity() -> None:
    app = worker_app()
    assert app.body["identity"]["type"] == "UserAssigned"
    assert list(app.body["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]
    registries = app.body["properties"]["configuration"]["registries"]
    assert registries == [{"server": "registryLoginServer", "identity": "identityId"}]
    env = env_of(app.body["properties"]["template"]["containers"][0], module("worker-app")["variables"])
    assert env["AZURE_CLIENT_ID"] == "identityClientId"
    assert env["AZURE_TOKEN_CREDENTIALS"] in {"ManagedIdentityCredential", "prod"}
    wired = unwrap(main()["modules"]["worker"]["config"])[0]["params"]
    assert render(wired["identityId"]) == "identity.outputs.id"
    assert render(wired["identityClientId"]) == "identity.outputs.clientId"


def test_keda_rule_is_servicebus_authenticated_by_identity() -> None:
    scale = worker_app().body["properties"]["template"]["scale"]
    rules = scale["rules"]
    assert len(rules) == 1
    custom = rules[0]["custom"]
    assert custom["type"] == "azure-servicebus"
    assert custom["identity"] == "identityId"
    assert "auth" not in custom and "connectionFromEnv" not in custom["metadata"]
    assert set(custom["metadata"]) >= {"namespace", "queueName", "messageCount"}
    assert custom["metadata"]["namespace"] == "serviceBusNamespaceName"
    assert custom["metadata"]["queueName"] == "jobsQueueName"
    # Every metadata value must be a string in ARM.
    for key, value in custom["metadata"].items():
        assert isinstance(value, str) or value["function"]["type"] == "string", key
    wired = unwrap(main()["modules"]["worker"]["config"])[0]["params"]
    assert render(wired["serviceBusNamespaceName"]) == "servicebus.outputs.name"  # name, not FQDN
    assert render(wired["jobsQueueName"]) == "servicebus.outputs.jobsQueueName"


def test_keda_identity_can_read_the_queue_it_scales_on() -> None:
    owners = [ra for ra in worker_roles() if ra.role == SB_OWNER]
    assert [(ra.scope_type, ra.scope_name) for ra in owners] == [(QUEUE, "jobsQueueName")]


def test_message_count_is_tied_to_max_concurrent_jobs() -> None:
    doc = module("worker-app")
    app = worker_app()
    metadata = app.body["properties"]["template"]["scale"]["rules"][0]["custom"]["metadata"]
    env = env_of(app.body["properties"]["template"]["containers"][0], doc["variables"])
    assert render(metadata["messageCount"]) == "string(maxConcurrentJobs)"
    assert render(env["MAX_CONCURRENT_JOBS"]) == "string(maxConcurrentJobs)"
    wired = unwrap(main()["modules"]["worker"]["config"])[0]["params"]
    assert wired["maxConcurrentJobs"] == "maxConcurrentJobs"


def test_replicas_are_parameters() -> None:
    scale = worker_app().body["properties"]["template"]["scale"]
    assert scale["minReplicas"] == "minReplicas"
    assert scale["maxReplicas"] == "maxReplicas"
    wired = unwrap(main()["modules"]["worker"]["config"])[0]["params"]
    assert wired["minReplicas"] == "minReplicas"
    assert wired["maxReplicas"] == "maxReplicas"
    assert decorator(main(), "maxReplicas", "min_value") >= 1


def test_termination_grace_covers_shutdown_grace() -> None:
    doc = module("worker-app")
    template = worker_app().body["properties"]["template"]
    assert template["terminationGracePeriodSeconds"] == "terminationGracePeriodSeconds"
    grace = doc["variables"]["terminationGracePeriodSeconds"]["value"]
    assert render(grace) == "shutdownGraceSeconds + settleMarginSeconds"
    margin = doc["variables"]["settleMarginSeconds"]["value"]
    assert isinstance(margin, int) and margin >= 10
    env = env_of(template["containers"][0], doc["variables"])
    assert render(env["SHUTDOWN_GRACE_S"]) == "string(shutdownGraceSeconds)"
    # ACA caps the grace period at 600 s: the largest allowed SHUTDOWN_GRACE_S must still fit.
    assert decorator(doc, "shutdownGraceSeconds", "max_value") + margin <= 600
    assert decorator(main(), "shutdownGraceSeconds", "max_value") + margin <= 600
    assert param_default(main(), "shutdownGraceSeconds") + margin > 30  # beyond the platform default


def test_health_probes_hit_the_health_server() -> None:
    doc = module("worker-app")
    container = worker_app().body["properties"]["template"]["containers"][0]
    probes = {p["type"]: p for p in container["probes"]}
    assert set(probes) == {"Startup", "Liveness", "Readiness"}
    assert probes["Liveness"]["httpGet"]["path"] == "/healthz"
    assert probes["Startup"]["httpGet"]["path"] == "/healthz"
    assert probes["Readiness"]["httpGet"]["path"] == "/readyz"
    port = doc["variables"]["healthPort"]["value"]
    assert all(p["httpGet"]["port"] == "healthPort" for p in probes.values())
    env = env_of(container, doc["variables"])
    assert render(env["HEALTH_PORT"]) == "string(healthPort)"
    assert port == 8080
    assert container["args"] == ["run"]


def test_app_gets_the_design_settings_from_outputs() -> None:
    doc = module("worker-app")
    env = env_of(worker_app().body["properties"]["template"]["containers"][0], doc["variables"])
    assert {
        "SERVICEBUS_NAMESPACE",
        "SERVICEBUS_QUEUE",
        "RESULTS_QUEUE",
        "STORAGE_ACCOUNT_URL",
        "RESULTS_CONTAINER",
        "ALLOWED_INPUT_CONTAINERS",
        "VOICELIVE_ENDPOINT",
        "VOICELIVE_MODEL",
        "VOICELIVE_CONNECTS_PER_MINUTE",
        "MAX_CONCURRENT_JOBS",
        "MAX_ATTEMPTS",
        "SHUTDOWN_GRACE_S",
        "HEALTH_PORT",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "OTEL_SERVICE_NAME",
        "TRACE_CONTENT",
        "AZURE_CLIENT_ID",
        "AZURE_TOKEN_CREDENTIALS",
    } <= set(env)
    assert env["TRACE_CONTENT"] == "false"
    wired = unwrap(main()["modules"]["worker"]["config"])[0]["params"]
    assert render(wired["serviceBusFqdn"]) == "servicebus.outputs.fqdn"
    assert render(wired["storageAccountUrl"]) == "storage.outputs.blobEndpoint"
    assert render(wired["voiceLiveEndpoint"]) == (
        "useExistingVoiceLive ? existingVoiceLiveEndpoint : aiservices.outputs.endpoint"
    )
    assert render(wired["appInsightsConnectionString"]) == "monitoring.outputs.appInsightsConnectionString"
    assert render(wired["allowedInputContainers"]) == "${storage.outputs.name}/${inputContainerName}"


def test_app_is_tagged_for_azd_and_keeps_its_image_on_reprovision() -> None:
    app = worker_app()
    assert render(app.body["tags"]) == "union(tags, {'azd-service-name': worker})"
    image = render(app.body["properties"]["template"]["containers"][0]["image"])
    assert image.startswith("exists ? existingApp.properties.template.containers[0].image")


# ---------------------------------------------------------------------------------------------------
# Service Bus queues
# ---------------------------------------------------------------------------------------------------


def test_jobs_queue_settings() -> None:
    doc = module("servicebus")
    queues = {render(q.body["name"]): q for q in of_type(doc, QUEUE)}
    jobs = queues["jobsQueueName"].body["properties"]
    assert jobs["lockDuration"] == "PT5M"
    assert jobs["maxDeliveryCount"] == "maxDeliveryCount"
    assert jobs["deadLetteringOnMessageExpiration"] is True
    assert jobs["requiresDuplicateDetection"] is True
    assert jobs["duplicateDetectionHistoryTimeWindow"] == "duplicateDetectionWindow"
    assert jobs["requiresSession"] is False
    results = queues["resultsQueueName"]
    assert render(results.condition) == "createResultsQueue"
    assert param_default(main(), "createResultsQueue") is True


def test_servicebus_fqdn_output_strips_scheme_and_port() -> None:
    out = module("servicebus")["outputs"]["fqdn"]["value"]
    assert render(out).startswith("split(replace(namespace.properties.serviceBusEndpoint, https://, ), :)")


def test_azd_outputs_use_the_worker_setting_names() -> None:
    outputs = main()["outputs"]
    assert {
        "AZURE_CONTAINER_REGISTRY_ENDPOINT",
        "SERVICEBUS_NAMESPACE",
        "SERVICEBUS_QUEUE",
        "RESULTS_QUEUE",
        "STORAGE_ACCOUNT_URL",
        "RESULTS_CONTAINER",
        "ALLOWED_INPUT_CONTAINERS",
        "VOICELIVE_ENDPOINT",
        "VOICELIVE_MODEL",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    } <= set(outputs)
    # AZURE_CLIENT_ID would make a developer's local DefaultAzureCredential pick the worker identity.
    assert "AZURE_CLIENT_ID" not in outputs
