"""Azure's own Python clients against the emulator.

Run by the Rust test `sdk::azure_clients_accept_every_answer` (sim/tests/sim/sdk.rs) with the
venv that `scripts/test` makes from sim/tests/sdk/requirements.txt:

    python -B contract.py BASE_URL RESTRICTED_URL
    python -B contract.py --bodies RECORD   (request bodies recorded by proxy.py)

Every operation the seed's procedures and the `az sql mi`, `az sql instance-failover-group`,
`az network vnet` and `az network nsg` commands use is called through the SDK's own operation
(URL template, api-version, accepted status codes), deserialisation and LRO poller. Each model
the SDK returns is then checked against the SDK model's own facts:

- every field the model requires is present;
- no field the model does not define (nothing the SDK would keep as an unknown or
  `additional_properties` entry);
- every enum value is one of the SDK enum's values.

Error paths: each expected failure must raise `HttpResponseError` with the expected status and
`error.code`; every (operationId, status, code) seen is printed as an `ERROR` line, which the
Rust test looks up in the emulator's error map (sim/tests/sim/contract/error-codes.txt); a
long-running operation that ends Failed is printed with status `lro` (its code, any status).

The clients talk plain HTTP to 127.0.0.1. azure-core's bearer token policy refuses to send a
token over http, so the clients get a fixed-token authentication policy instead
(`StaticBearer`); everything else in their pipelines is the SDK's. Long-running operations are
polled by the SDK's own ARMPolling; only its sleep is replaced by advancing the emulator's
simulated clock (`POST /_sim/clock/advance`), so a four-hour create takes no real time.

Prints `OK N` on success; otherwise one `FAIL ...` line per problem and exits with status 1.
"""

import enum
import json
import sys
import time
import typing
import urllib.request

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.polling import base_polling
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network import models as net_models
from azure.mgmt.resource import SubscriptionClient
from azure.mgmt.sql import SqlManagementClient
from azure.mgmt.sql import models as sql_models

BODIES = sys.argv[2] if sys.argv[1] == "--bodies" else None
BASE = "http://127.0.0.1:9" if BODIES else sys.argv[1].rstrip("/")
# An emulator whose estate lets this caller's token only read (`*/read` on the subscription).
RESTRICTED = sys.argv[2].rstrip("/") if len(sys.argv) > 2 and not BODIES else None
SUB = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7"
EAST, WEST, NORTH = "rg-sql-eastus", "rg-sql-westus", "rg-sql-northeurope"

failures = []
checked = 0
quiet = False


def fail(what):
    failures.append(what)
    if not quiet:
        print(f"FAIL {what}", flush=True)


class StaticBearer(SansIOHTTPPolicy):
    """Sends a fixed bearer token (the emulator accepts any token unless the estate names
    principals)."""

    def on_request(self, request):
        request.http_request.headers["Authorization"] = "Bearer sdk-contract-token"


class FakeCredential:
    """A token credential that never asks Entra ID (the clients require one)."""

    def get_token(self, *_scopes, **_kwargs):
        return AccessToken("sdk-contract-token", int(time.time()) + 3600)


def admin(method, path, body):
    """The emulator's admin API (not ARM: no SDK has it)."""
    request = urllib.request.Request(
        f"{BASE}{path}", data=json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        response.read()


def advance_clock(_self, _delay):
    """The SDK poller's sleep: one simulated hour passes instead of real time."""
    admin("POST", "/_sim/clock/advance", {"duration": "1h"})


def fault(rule):
    """One fault rule (sim/README.md, Faults), or none."""
    admin("PUT", "/_sim/faults", {"seed": 1, "rules": [rule] if rule else []})


base_polling.LROBasePolling._sleep = advance_clock

credential = FakeCredential()
client_args = {"base_url": BASE, "authentication_policy": StaticBearer(), "retry_total": 0}
sql = SqlManagementClient(credential, SUB, **client_args)
net = NetworkManagementClient(credential, SUB, **client_args)
auth = AuthorizationManagementClient(credential, SUB, api_version="2022-04-01", **client_args)
subs = SubscriptionClient(credential, **client_args)


# --- The SDK models' facts -------------------------------------------------------------------

def _unwrap(annotation):
    """(optional, [member types]) of an annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) != len(typing.get_args(annotation))
        members = []
        for arg in args:
            members.extend(_unwrap(arg)[1])
        return optional, members
    return False, [annotation]


def _hints(cls, models):
    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls, {**vars(module), "_models": models})


def is_model(member):
    return isinstance(member, type) and hasattr(member, "_calculated")


def rest_fields(cls):
    """The model's own fields by attribute name. The SDK computes them when the class is first
    instantiated (before that a subclass shows its parent's), so make sure it has."""
    if f"{cls.__module__}.{cls.__qualname__}" not in cls._calculated:
        cls.__new__(cls)
    return cls._attr_to_rest_field


def check_model(data, cls, models, where, request=False):
    """Checks raw JSON `data` against a TypeSpec-generated (azure-mgmt-sql 4, -network 33)
    model class."""
    global checked
    checked += 1
    # The SDK deserialises nested objects in place: a model keeps its raw JSON in `_data`.
    data = getattr(data, "_data", data)
    if not isinstance(data, dict):
        fail(f"{where}: expected an object for {cls.__name__}, got {data!r:.200}")
        return
    fields = {f._rest_name: (attr, f) for attr, f in rest_fields(cls).items()}
    hints = _hints(cls, models)
    for key in data:
        if key not in fields:
            fail(f"{where}: field '{key}' is not in the SDK model {cls.__name__}")
        elif request and list(fields[key][1]._visibility or []) == ["read"]:
            fail(f"{where}: field '{key}' of {cls.__name__} is read-only; a request must not send it")
    for rest_name, (attr, _field) in fields.items():
        optional, members = _unwrap(hints.get(attr, typing.Any))
        if rest_name not in data:
            if not optional:
                fail(f"{where}: {cls.__name__} requires '{rest_name}'")
            continue
        check_value(data[rest_name], members, models, f"{where}.{rest_name}", request)


def check_value(value, members, models, where, request=False):
    if value is None:
        return
    for member in members:
        origin = typing.get_origin(member)
        if isinstance(member, type) and issubclass(member, enum.Enum):
            allowed = {e.value for e in member}
            if value not in allowed:
                fail(f"{where}: '{value}' is not a value of the SDK enum {member.__name__} {sorted(allowed)}")
            return
        if origin is list:
            (item,) = typing.get_args(member)
            if not isinstance(value, list):
                fail(f"{where}: expected a list, got {value!r}")
                return
            for i, element in enumerate(value):
                check_value(element, _unwrap(item)[1], models, f"{where}[{i}]", request)
            return
        if is_model(member):
            check_model(value, member, models, where, request)
            return


def check_sdk_result(obj, where):
    """A model the new SDKs returned: its raw JSON (kept whole by the model) against its class."""
    models = sql_models if type(obj).__module__.startswith("azure.mgmt.sql") else net_models
    check_model(obj._data, type(obj), models, where)


def check_msrest(obj, where):
    """A model of the msrest-generated SDKs (authorization, resource): nothing kept in
    `additional_properties`, every `_validation` required attribute present."""
    global checked
    checked += 1
    extra = getattr(obj, "additional_properties", None)
    if extra:
        fail(f"{where}: fields not in the SDK model {type(obj).__name__}: {sorted(extra)}")
    for attr, rules in getattr(obj, "_validation", {}).items():
        if rules.get("required") and getattr(obj, attr, None) is None:
            fail(f"{where}: {type(obj).__name__} requires '{attr}'")
    for attr in getattr(obj, "_attribute_map", {}):
        if attr == "additional_properties":
            continue
        value = getattr(obj, attr, None)
        for item in value if isinstance(value, list) else [value]:
            if hasattr(item, "_attribute_map"):
                check_msrest(item, f"{where}.{attr}")


def ok(label, fn, check=check_sdk_result):
    """Calls one SDK operation; checks what it returns (a model, a pager's items, an LRO's final
    model)."""
    try:
        result = fn()
        if hasattr(result, "result") and hasattr(result, "status"):
            result = result.result()
        if hasattr(result, "__iter__") and not hasattr(result, "_data") and not isinstance(result, dict):
            items = list(result)
            if not items and not label.endswith("(may be empty)"):
                fail(f"{label}: empty list")
            for i, item in enumerate(items):
                check(item, f"{label}[{i}]")
            return items
        if result is not None:
            check(result, label)
        return result
    except HttpResponseError as e:
        fail(f"{label}: HTTP {e.status_code} {e.error.code if e.error else ''}: {e.message}")
    except Exception as e:  # noqa: BLE001 - every SDK failure is a contract failure
        fail(f"{label}: {type(e).__name__}: {e}")
    return None


def error(label, operation, status, code, fn):
    """An SDK call that must fail with HttpResponseError(status, code). `status` "lro": a
    long-running operation that ends Failed; the poller raises with the status of the poll
    (200) and the operation's error code."""
    try:
        result = fn()
        if hasattr(result, "result") and hasattr(result, "status"):
            result.result()
        elif hasattr(result, "__iter__") and not hasattr(result, "_data"):
            list(result)
        fail(f"{label}: succeeded; expected {status} {code}")
    except HttpResponseError as e:
        got = e.error.code if e.error else None
        seen = "lro" if status == "lro" and e.status_code == 200 else e.status_code
        print(f"ERROR {operation} {seen} {got}", flush=True)
        if seen != status or got != code:
            fail(f"{label}: got {e.status_code} {got}; expected {status} {code}")


# --- Request bodies fogbook's client sent (recorded by proxy.py) ----------------------------

# The SDK model of each request body, by the last segments of the path and the method.
REQUEST_MODELS = [
    ("PUT", "/managedInstances/", sql_models.ManagedInstance, sql_models),
    ("PATCH", "/managedInstances/", sql_models.ManagedInstanceUpdate, sql_models),
    ("PUT", "/databases/", sql_models.ManagedDatabase, sql_models),
    ("PATCH", "/databases/", sql_models.ManagedDatabaseUpdate, sql_models),
    ("PUT", "/instanceFailoverGroups/", sql_models.InstanceFailoverGroup, sql_models),
    ("PUT", "/subnets/", net_models.Subnet, net_models),
    ("PUT", "/virtualNetworkPeerings/", net_models.VirtualNetworkPeering, net_models),
    ("PUT", "/securityRules/", net_models.SecurityRule, net_models),
    ("PUT", "/virtualNetworks/", net_models.VirtualNetwork, net_models),
    ("PUT", "/networkSecurityGroups/", net_models.NetworkSecurityGroup, net_models),
]


def request_model(method, path):
    path = path.split("?")[0]
    best = None
    for want, segment, cls, models in REQUEST_MODELS:
        at = path.rfind(segment)
        # The resource is the last collection in the path with one name after it.
        if method == want and at >= 0 and "/" not in path[at + len(segment):]:
            if best is None or at > best[0]:
                best = (at, cls, models)
    return best and best[1:]


def check_bodies(record):
    """Every body fogbook's client sent: the SDK's model for that request defines every field
    (nothing its serialisation would drop or reject) and none of them is read-only."""
    kinds = {}
    with open(record, encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            entry = json.loads(line)
            method, path, body = entry["method"], entry["path"], entry["body"]
            found = request_model(method, path)
            if found is None:
                fail(f"body {n}: no SDK model for {method} {path}")
                continue
            cls, models = found
            kinds[f"{method} {cls.__name__}"] = kinds.get(f"{method} {cls.__name__}", 0) + 1
            check_model(body, cls, models, f"body {n} ({method} {path.split('?')[0]})", request=True)
    for kind, count in sorted(kinds.items()):
        print(f"BODY {kind} {count}", flush=True)

# --- The checks catch what they are for ------------------------------------------------------

def selftest():
    """The model checks find an unknown field, a missing required field, a value outside an enum
    and a read-only field in a request (else every pass below would prove nothing)."""
    global checked, quiet
    before = list(failures)
    quiet = True
    bad = {
        "location": "eastus",
        "sku": {"name": "GP_Gen5"},
        "properties": {"licenseType": "Free", "notAField": 1},
    }
    check_model(bad, sql_models.ManagedInstance, sql_models, "selftest")
    check_model({"properties": {}}, sql_models.ManagedInstance, sql_models, "selftest-missing")
    sent = {"location": "eastus", "properties": {"dnsZone": "1a2b3c"}}
    check_model(sent, sql_models.ManagedInstance, sql_models, "selftest-request", request=True)
    found = failures[len(before):]
    del failures[len(before):]
    checked = 0
    quiet = False
    expected = [
        "field 'notAField' is not in the SDK model",
        "is not a value of the SDK enum ManagedInstanceLicenseType",
        "ManagedInstance requires 'location'",
        "field 'dnsZone' of ManagedInstanceProperties is read-only",
    ]
    for text in expected:
        if not any(text in f for f in found):
            fail(f"selftest: the model check missed: {text} (found {found})")
    print(f"selftest: {len(found)} planted problems found", flush=True)


selftest()
if BODIES:
    check_bodies(BODIES)
    if failures:
        print(f"{len(failures)} request body failure(s)", flush=True)
        sys.exit(1)
    print(f"OK {checked}", flush=True)
    sys.exit(0)

# --- Subscription, permissions, capabilities ------------------------------------------------

ok("Subscriptions_Get", lambda: subs.subscriptions.get(SUB), check_msrest)
ok("Permissions_ListForResourceGroup", lambda: auth.permissions.list_for_resource_group(EAST), check_msrest)
ok("Permissions_ListForResource", lambda: auth.permissions.list_for_resource(
    EAST, "Microsoft.Sql", "", "managedInstances", "mi-fog-a"), check_msrest)
ok("Capabilities_ListByLocation", lambda: sql.capabilities.list_by_location("eastus"))

# --- Managed instances and databases --------------------------------------------------------

ok("ManagedInstances_List", lambda: sql.managed_instances.list())
ok("ManagedInstances_ListByResourceGroup", lambda: sql.managed_instances.list_by_resource_group(EAST))
mi_a = ok("ManagedInstances_Get", lambda: sql.managed_instances.get(EAST, "mi-fog-a"))
ok("ManagedDatabases_ListByInstance", lambda: sql.managed_databases.list_by_instance(EAST, "mi-fog-a"))
ok("ManagedDatabases_Get", lambda: sql.managed_databases.get(EAST, "mi-fog-a", "sales"))
ok("ManagedInstances_Update", lambda: sql.managed_instances.begin_update(
    EAST, "mi-fog-a", sql_models.ManagedInstanceUpdate(tags={"environment": "prod", "owner": "sdk"})))

if mi_a is not None:
    # What `az sql mi update` does: get, change, put the whole instance back.
    mi_a.tags = {"environment": "prod", "owner": "az"}
    ok("ManagedInstances_CreateOrUpdate (update of an existing instance)",
       lambda: sql.managed_instances.begin_create_or_update(EAST, "mi-fog-a", mi_a))
    again = ok("ManagedInstances_Get (after the update)", lambda: sql.managed_instances.get(EAST, "mi-fog-a"))
    if again is not None and (again.tags or {}).get("owner") != "az":
        fail(f"the whole-instance PUT did not apply its tags: {again.tags}")

north_subnet = f"/subscriptions/{SUB}/resourceGroups/{NORTH}/providers/Microsoft.Network/virtualNetworks/vnet-sql-northeurope/subnets/snet-mi"
new_instance = sql_models.ManagedInstance(
    location="northeurope",
    sku=sql_models.Sku(name="GP_Gen5", tier="GeneralPurpose"),
    properties=sql_models.ManagedInstanceProperties(
        administrator_login="sqladmin",
        administrator_login_password="Pa55w.rd-for-the-emulator",
        subnet_id=north_subnet,
        v_cores=8,
        storage_size_in_gb=256,
        license_type="LicenseIncluded",
    ),
)
ok("ManagedInstances_CreateOrUpdate", lambda: sql.managed_instances.begin_create_or_update(
    NORTH, "mi-sdk-c", new_instance))
ok("ManagedDatabases_CreateOrUpdate", lambda: sql.managed_databases.begin_create_or_update(
    NORTH, "mi-sdk-c", "sdkdb", sql_models.ManagedDatabase(location="northeurope")))
ok("ManagedDatabases_Delete", lambda: sql.managed_databases.begin_delete(NORTH, "mi-sdk-c", "sdkdb"))

error("ManagedInstances_Get (absent)", "ManagedInstances_Get", 404, "ResourceNotFound",
      lambda: sql.managed_instances.get(EAST, "mi-not-there"))
error("ManagedInstances_CreateOrUpdate (name taken)", "ManagedInstances_CreateOrUpdate", 400,
      "NameAlreadyExists",
      lambda: sql.managed_instances.begin_create_or_update(NORTH, "mi-fog-a", new_instance))
error("ManagedDatabases_Get (absent)", "ManagedDatabases_Get", 404, "ResourceNotFound",
      lambda: sql.managed_databases.get(EAST, "mi-fog-a", "no-such-db"))
bad_vcores = sql_models.ManagedInstance(
    location="northeurope",
    sku=sql_models.Sku(name="GP_Gen5"),
    properties=sql_models.ManagedInstanceProperties(
        administrator_login="sqladmin", administrator_login_password="Pa55w.rd-for-the-emulator",
        subnet_id=north_subnet, v_cores=7, storage_size_in_gb=256),
)
error("ManagedInstances_CreateOrUpdate (vCores)", "ManagedInstances_CreateOrUpdate", 405,
      "InvalidVcoreValue",
      lambda: sql.managed_instances.begin_create_or_update(NORTH, "mi-sdk-d", bad_vcores))

# --- Failover groups ------------------------------------------------------------------------

ok("InstanceFailoverGroups_ListByLocation", lambda: sql.instance_failover_groups.list_by_location(EAST, "eastus"))
group = ok("InstanceFailoverGroups_Get", lambda: sql.instance_failover_groups.get(EAST, "eastus", "fog-demo"))
ok("InstanceFailoverGroups_Get (secondary view)", lambda: sql.instance_failover_groups.get(WEST, "westus", "fog-demo"))
error("InstanceFailoverGroups_Failover (at the primary)", "InstanceFailoverGroups_Failover", 400,
      "InstanceFailoverGroupFailoverRequestOnPrimary",
      lambda: sql.instance_failover_groups.begin_failover(EAST, "eastus", "fog-demo"))
error("InstanceFailoverGroups_ForceFailoverAllowDataLoss (at the primary)",
      "InstanceFailoverGroups_ForceFailoverAllowDataLoss", 400, "InstanceFailoverGroupFailoverRequestOnPrimary",
      lambda: sql.instance_failover_groups.begin_force_failover_allow_data_loss(EAST, "eastus", "fog-demo"))
# A planned failover that Azure rolls back: the SDK's poller raises the operation's error.
fault({"operation": "InstanceFailoverGroups_Failover", "fail_rate": 1.0, "max_hits": 1})
error("InstanceFailoverGroups_Failover (rolled back)", "InstanceFailoverGroups_Failover", "lro",
      "PlannedFailoverTimedOut",
      lambda: sql.instance_failover_groups.begin_failover(WEST, "westus", "fog-demo"))
# Throttled by ARM (the SDK's retries are off here, so the 429 reaches the caller).
fault({"operation": "InstanceFailoverGroups_Get", "error_rate": 1.0, "error_status": 429, "max_hits": 1})
error("InstanceFailoverGroups_Get (throttled)", "InstanceFailoverGroups_Get", 429,
      "SubscriptionRequestsThrottled",
      lambda: sql.instance_failover_groups.get(WEST, "westus", "fog-demo"))
fault(None)
ok("InstanceFailoverGroups_Failover", lambda: sql.instance_failover_groups.begin_failover(WEST, "westus", "fog-demo"))
after = ok("InstanceFailoverGroups_Get (after failover)", lambda: sql.instance_failover_groups.get(WEST, "westus", "fog-demo"))
if after is not None and after.properties.replication_role != "Primary":
    fail(f"after the failover westus is {after.properties.replication_role}, not Primary")
ok("InstanceFailoverGroups_ForceFailoverAllowDataLoss",
   lambda: sql.instance_failover_groups.begin_force_failover_allow_data_loss(EAST, "eastus", "fog-demo"))
back = ok("InstanceFailoverGroups_Get (after forced failover)", lambda: sql.instance_failover_groups.get(EAST, "eastus", "fog-demo"))
if back is not None and back.properties.replication_role != "Primary":
    fail(f"after the forced failover eastus is {back.properties.replication_role}, not Primary")
if group is not None:
    # What `az sql instance-failover-group update` does: get, change, put the whole group back.
    group.properties.read_write_endpoint.failover_policy = "Manual"
    ok("InstanceFailoverGroups_CreateOrUpdate", lambda: sql.instance_failover_groups.begin_create_or_update(
        EAST, "eastus", "fog-demo", group))
    error("InstanceFailoverGroups_CreateOrUpdate (instance already in a group)",
          "InstanceFailoverGroups_CreateOrUpdate", 409, "InstanceFailoverGroupAlreadyExists",
          lambda: sql.instance_failover_groups.begin_create_or_update(EAST, "eastus", "fog-other", group))
error("InstanceFailoverGroups_Delete (at the secondary)", "InstanceFailoverGroups_Delete", 400,
      "InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary",
      lambda: sql.instance_failover_groups.begin_delete(WEST, "westus", "fog-demo"))
ok("InstanceFailoverGroups_Delete", lambda: sql.instance_failover_groups.begin_delete(EAST, "eastus", "fog-demo"))
ok("InstanceFailoverGroups_ListByLocation (may be empty)",
   lambda: sql.instance_failover_groups.list_by_location(EAST, "eastus"))
ok("ManagedInstances_Delete", lambda: sql.managed_instances.begin_delete(NORTH, "mi-sdk-c"))

# --- Virtual networks, subnets, peerings ----------------------------------------------------

ok("VirtualNetworks_ListAll", lambda: net.virtual_networks.list_all())
ok("VirtualNetworks_List", lambda: net.virtual_networks.list(EAST))
east_vnet = ok("VirtualNetworks_Get", lambda: net.virtual_networks.get(EAST, "vnet-sql-eastus"))
if east_vnet is not None:
    # What `az network vnet update` does: get, change, put the whole network back.
    east_vnet.tags = {"owner": "az"}
    ok("VirtualNetworks_CreateOrUpdate (update)",
       lambda: net.virtual_networks.begin_create_or_update(EAST, "vnet-sql-eastus", east_vnet))
    again = ok("VirtualNetworks_Get (after the update)", lambda: net.virtual_networks.get(EAST, "vnet-sql-eastus"))
    if again is not None and ((again.tags or {}).get("owner") != "az" or len(again.properties.subnets) != 2):
        fail(f"the whole-network PUT lost something: tags {again.tags}, subnets {again.properties.subnets}")
ok("Subnets_List", lambda: net.subnets.list(EAST, "vnet-sql-eastus"))
subnet = ok("Subnets_Get", lambda: net.subnets.get(EAST, "vnet-sql-eastus", "snet-mi"))
ok("VirtualNetworkPeerings_List", lambda: net.virtual_network_peerings.list(EAST, "vnet-sql-eastus"))
ok("VirtualNetworkPeerings_Get", lambda: net.virtual_network_peerings.get(EAST, "vnet-sql-eastus", "eastus-to-westus"))

error("VirtualNetworks_Get (absent)", "VirtualNetworks_Get", 404, "ResourceNotFound",
      lambda: net.virtual_networks.get(EAST, "vnet-not-there"))
vnet = net_models.VirtualNetwork(
    location="northeurope",
    properties=net_models.VirtualNetworkPropertiesFormat(
        address_space=net_models.AddressSpace(address_prefixes=["10.40.0.0/16"]),
        subnets=[net_models.Subnet(name="default", properties=net_models.SubnetPropertiesFormat(
            address_prefix="10.40.0.0/24"))],
    ),
)
ok("VirtualNetworks_CreateOrUpdate", lambda: net.virtual_networks.begin_create_or_update(NORTH, "vnet-sdk", vnet))
ok("Subnets_CreateOrUpdate", lambda: net.subnets.begin_create_or_update(
    NORTH, "vnet-sdk", "snet-extra",
    net_models.Subnet(properties=net_models.SubnetPropertiesFormat(address_prefix="10.40.1.0/24"))))
error("Subnets_CreateOrUpdate (overlapping)", "Subnets_CreateOrUpdate", 400, "NetcfgSubnetRangesOverlap",
      lambda: net.subnets.begin_create_or_update(
          NORTH, "vnet-sdk", "snet-overlap",
          net_models.Subnet(properties=net_models.SubnetPropertiesFormat(address_prefix="10.40.1.0/25"))))
ok("Subnets_Delete", lambda: net.subnets.begin_delete(NORTH, "vnet-sdk", "snet-extra"))
peering = net_models.VirtualNetworkPeering(properties=net_models.VirtualNetworkPeeringPropertiesFormat(
    remote_virtual_network=net_models.SubResource(
        id=f"/subscriptions/{SUB}/resourceGroups/{NORTH}/providers/Microsoft.Network/virtualNetworks/vnet-sql-northeurope"),
    allow_virtual_network_access=True,
    allow_forwarded_traffic=True,
))
ok("VirtualNetworkPeerings_CreateOrUpdate", lambda: net.virtual_network_peerings.begin_create_or_update(
    NORTH, "vnet-sdk", "sdk-to-north", peering))
ok("VirtualNetworkPeerings_Delete", lambda: net.virtual_network_peerings.begin_delete(NORTH, "vnet-sdk", "sdk-to-north"))
ok("VirtualNetworks_Delete", lambda: net.virtual_networks.begin_delete(NORTH, "vnet-sdk"))
if subnet is not None:
    subnet.properties.address_prefix = "10.10.3.0/24"
    error("Subnets_CreateOrUpdate (prefix of a used subnet)", "Subnets_CreateOrUpdate", 400,
          "InUsePrefixCannotBeDeleted",
          lambda: net.subnets.begin_create_or_update(EAST, "vnet-sql-eastus", "snet-mi", subnet))
error("Subnets_Delete (used by an instance)", "Subnets_Delete", 400, "InUseSubnetCannotBeDeleted",
      lambda: net.subnets.begin_delete(EAST, "vnet-sql-eastus", "snet-mi"))

# --- Network security groups and rules ------------------------------------------------------

ok("NetworkSecurityGroups_ListAll", lambda: net.network_security_groups.list_all())
ok("NetworkSecurityGroups_List", lambda: net.network_security_groups.list(EAST))
east_nsg = ok("NetworkSecurityGroups_Get", lambda: net.network_security_groups.get(EAST, "nsg-mi-eastus"))
if east_nsg is not None:
    # What `az network nsg update` does: get, change, put the whole group back.
    east_nsg.tags = {"owner": "az"}
    ok("NetworkSecurityGroups_CreateOrUpdate (update)",
       lambda: net.network_security_groups.begin_create_or_update(EAST, "nsg-mi-eastus", east_nsg))
    again = ok("NetworkSecurityGroups_Get (after the update)", lambda: net.network_security_groups.get(EAST, "nsg-mi-eastus"))
    if again is not None and ((again.tags or {}).get("owner") != "az" or len(again.properties.security_rules) != 4):
        fail(f"the whole-NSG PUT lost something: tags {again.tags}, rules {again.properties.security_rules}")
ok("SecurityRules_List", lambda: net.security_rules.list(EAST, "nsg-mi-eastus"))
ok("SecurityRules_Get", lambda: net.security_rules.get(EAST, "nsg-mi-eastus", "allow_geodr_inbound"))
ok("NetworkSecurityGroups_CreateOrUpdate", lambda: net.network_security_groups.begin_create_or_update(
    NORTH, "nsg-sdk", net_models.NetworkSecurityGroup(location="northeurope")))
rule = net_models.SecurityRule(properties=net_models.SecurityRulePropertiesFormat(
    priority=1200, direction="Inbound", access="Allow", protocol="Tcp",
    source_address_prefix="VirtualNetwork", source_port_range="*",
    destination_address_prefix="*", destination_port_ranges=["5022", "11000-11999"],
))
ok("SecurityRules_CreateOrUpdate", lambda: net.security_rules.begin_create_or_update(
    NORTH, "nsg-sdk", "allow_geodr_inbound", rule))
ok("SecurityRules_Delete", lambda: net.security_rules.begin_delete(NORTH, "nsg-sdk", "allow_geodr_inbound"))
ok("NetworkSecurityGroups_Delete", lambda: net.network_security_groups.begin_delete(NORTH, "nsg-sdk"))
error("NetworkSecurityGroups_Delete (used by a subnet)", "NetworkSecurityGroups_Delete", 400,
      "InUseNetworkSecurityGroupCannotBeDeleted",
      lambda: net.network_security_groups.begin_delete(EAST, "nsg-mi-eastus"))
error("Subscriptions_Get (unknown)", "Subscriptions_Get", 404, "SubscriptionNotFound",
      lambda: subs.subscriptions.get("00000000-0000-4000-8000-000000000000"))

# --- Role assignments (an estate with principals) -------------------------------------------

if RESTRICTED is None:
    fail("no RESTRICTED_URL: the permission paths were not driven")
else:
    sql_r = SqlManagementClient(credential, SUB, **{**client_args, "base_url": RESTRICTED})
    auth_r = AuthorizationManagementClient(
        credential, SUB, api_version="2022-04-01", **{**client_args, "base_url": RESTRICTED})
    granted = ok("Permissions_ListForResourceGroup (reader)",
                 lambda: auth_r.permissions.list_for_resource_group(EAST), check_msrest)
    if granted is not None and [p.actions for p in granted] != [["*/read"]]:
        fail(f"a reader's permissions: {[p.actions for p in granted]}")
    ok("ManagedInstances_Get (reader)", lambda: sql_r.managed_instances.get(EAST, "mi-fog-a"))
    error("ManagedInstances_Update (reader)", "ManagedInstances_Update", 403, "AuthorizationFailed",
          lambda: sql_r.managed_instances.begin_update(
              EAST, "mi-fog-a", sql_models.ManagedInstanceUpdate(tags={"owner": "reader"})))
    error("InstanceFailoverGroups_Failover (reader)", "InstanceFailoverGroups_Failover", 403,
          "AuthorizationFailed",
          lambda: sql_r.instance_failover_groups.begin_failover(WEST, "westus", "fog-demo"))

if failures:
    print(f"{len(failures)} contract failure(s)", flush=True)
    sys.exit(1)
print(f"OK {checked}", flush=True)
