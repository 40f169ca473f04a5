"""Networking API v2.0 STAND-IN (not Neutron), under /network/v2.0, following
docs.openstack.org/api-ref/network/v2: networks, subnets, ports,
security-groups, security-group-rules, routers (list/show), floatingips
(none; creation answers 404 as no external network exists), extensions.
"""

import ipaddress
import re
import uuid

from . import state
from .api import UNAUTHORIZED, ApiError, Service, Unhandled, json_body, match_routes, parse_bool
from .common import log, ts
from .state import mac_for

NEUTRON_EXTENSIONS = [
    ("security-group", "security-group", "The security groups extension."),
    ("project-id", "project-id field", "Extension that indicates that project_id field is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources."),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks."),
    ("port-security", "Port Security", "Provides port security"),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("extra_dhcp_opt", "Neutron Extra DHCP options", "Extra options configuration for DHCP."),
]

NEUTRON_TYPES = {404: "NotFound", 400: "BadRequest", 409: "Conflict", 403: "Forbidden"}


class Network(Service):
    prefix = "/network"

    def __init__(self):
        self.routes = [
            ("GET", r"/networks", self.lister("networks", "networks", self.net_view)),
            ("GET", r"/networks/(?P<rid>[^/]+)", self.shower("networks", "network", self.net_view, "Network")),
            ("GET", r"/subnets", self.lister("subnets", "subnets", self.subnet_view)),
            ("GET", r"/subnets/(?P<rid>[^/]+)", self.shower("subnets", "subnet", self.subnet_view, "Subnet")),
            ("GET", r"/routers", self.lister("routers", "routers", self.router_view)),
            ("GET", r"/routers/(?P<rid>[^/]+)", self.shower("routers", "router", self.router_view, "Router")),
            ("GET", r"/ports", self.lister("ports", "ports", self.port_view)),
            ("GET", r"/ports/(?P<rid>[^/]+)", self.shower("ports", "port", self.port_view, "Port")),
            ("POST", r"/ports", self.port_create),
            ("PUT", r"/ports/(?P<rid>[^/]+)", self.port_update),
            ("DELETE", r"/ports/(?P<rid>[^/]+)", self.port_delete),
            ("GET", r"/security-groups", self.lister("security_groups", "security_groups", self.sg_view)),
            ("GET", r"/security-groups/(?P<rid>[^/]+)",
             self.shower("security_groups", "security_group", self.sg_view, "SecurityGroup")),
            ("POST", r"/security-groups", self.sg_create),
            ("PUT", r"/security-groups/(?P<rid>[^/]+)", self.sg_update),
            ("DELETE", r"/security-groups/(?P<rid>[^/]+)", self.sg_delete),
            ("GET", r"/security-group-rules", self.lister("sg_rules", "security_group_rules", self.rule_view)),
            ("GET", r"/security-group-rules/(?P<rid>[^/]+)",
             self.shower("sg_rules", "security_group_rule", self.rule_view, "SecurityGroupRule")),
            ("POST", r"/security-group-rules", self.rule_create),
            ("DELETE", r"/security-group-rules/(?P<rid>[^/]+)", self.rule_delete),
            ("GET", r"/floatingips", self.fip_list),
            ("POST", r"/floatingips", self.fip_create),
            ("GET", r"/floatingips/(?P<rid>[^/]+)", self.fip_missing),
            ("PUT", r"/floatingips/(?P<rid>[^/]+)", self.fip_missing),
            ("DELETE", r"/floatingips/(?P<rid>[^/]+)", self.fip_missing),
            ("GET", r"/extensions", self.ext_list),
            ("GET", r"/extensions/(?P<alias>[^/]+)", self.ext_show),
        ]

    def error_body(self, e):
        return {"NeutronError": {"type": e.kind or NEUTRON_TYPES.get(e.status, "NeutronError"),
                                 "message": e.message, "detail": ""}}

    def handle(self, req, sub):
        if req.method == "GET" and sub in ("", "/"):
            return 200, {"versions": [{"id": "v2.0", "status": "CURRENT",
                                       "links": [{"rel": "self", "href": self.url("/v2.0/")}]}]}, {}
        if not req.token:
            return 401, UNAUTHORIZED, {}
        if req.method == "GET" and sub in ("/v2.0", "/v2.0/"):
            return 200, {"resources": [
                {"name": n, "collection": c, "links": [{"rel": "self", "href": self.url("/v2.0/", c)}]}
                for n, c in (("network", "networks"), ("subnet", "subnets"), ("port", "ports"))]}, {}
        if not sub.startswith("/v2.0/"):
            raise Unhandled()
        rest = sub[len("/v2.0"):].rstrip("/")
        if rest.endswith(".json"):
            rest = rest[:-5]
        req.project = state.CFG.project_id
        fn, args = match_routes(self.routes, req.method, rest)
        if fn is None:
            raise Unhandled()
        try:
            status, body = fn(req, **args)
        except ApiError as e:
            return e.status, self.error_body(e), {}
        return status, body, {}

    # ---- generic list/show ---------------------------------------------------
    NON_FILTERS = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"}

    def apply_filters(self, items, q):
        for key, vals in q.items():
            if key in self.NON_FILTERS:
                continue
            if key == "fixed_ips":
                conds = [v.split("=", 1) for v in vals]
                items = [it for it in items if any(ip.get(k) == x for k, x in conds if k
                                                   for ip in it.get("fixed_ips", []))]
                continue
            if items and key not in items[0]:
                log("UNHANDLED network filter %r" % key)
                raise ApiError(400, "%s is not a valid filter (stand-in: unknown attribute)" % key,
                               kind="HTTPBadRequest")

            def norm(x):
                if isinstance(x, bool):
                    return str(x).lower()
                return "" if x is None else str(x)
            wanted = {v.lower() if v.lower() in ("true", "false") else v for v in vals}
            items = [it for it in items if (norm(it.get(key)) in wanted if not isinstance(it.get(key), list)
                                            else bool(set(map(str, it.get(key))) & wanted))]
        return items

    def project(self, view, q):
        fields = q.get("fields")
        if not fields:
            return view
        return {k: v for k, v in view.items() if k in fields}

    def lister(self, coll, key, view):
        def fn(req):
            with state.STORE.lock:
                items = [view(x) for x in sorted(state.STORE.data[coll].values(),
                                                 key=lambda x: (x.get("created_at", ""), x["id"]))]
                items = self.apply_filters(items, req.query)
                return 200, {key: [self.project(i, req.query) for i in items]}
        return fn

    def shower(self, coll, key, view, kind):
        def fn(req, rid):
            with state.STORE.lock:
                x = state.STORE.data[coll].get(rid)
                if x is None:
                    label = re.sub(r"(?<!^)([A-Z])", r" \1", kind).lower()
                    raise ApiError(404, "%s %s could not be found." % (label[0].upper() + label[1:], rid),
                                   kind=kind + "NotFound")
                return 200, {key: self.project(view(x), req.query)}
        return fn

    # ---- views ----------------------------------------------------------------
    @staticmethod
    def common(x):
        return {"tenant_id": x["project_id"], "project_id": x["project_id"],
                "created_at": x.get("created_at"), "updated_at": x.get("updated_at"),
                "revision_number": x.get("revision_number", 1), "tags": [],
                "description": x.get("description", "")}

    def net_view(self, n):
        out = {"id": n["id"], "name": n["name"], "status": "ACTIVE", "subnets": list(n["subnets"]),
               "admin_state_up": True, "shared": n.get("shared", False), "router:external": False, "mtu": 1500,
               "port_security_enabled": True, "availability_zones": ["nova"],
               "availability_zone_hints": [], "ipv4_address_scope": None, "ipv6_address_scope": None,
               "is_default": False, "l2_adjacency": True, "qos_policy_id": None,
               "provider:network_type": "flat", "provider:physical_network": "standin",
               "provider:segmentation_id": None}
        out.update(self.common(n))
        return out

    def subnet_view(self, s):
        out = {"id": s["id"], "name": s["name"], "network_id": s["network_id"], "cidr": s["cidr"],
               "ip_version": s["ip_version"], "gateway_ip": s["gateway_ip"],
               "allocation_pools": [dict(p) for p in s["allocation_pools"]], "host_routes": [],
               "dns_nameservers": [], "enable_dhcp": True, "ipv6_ra_mode": None,
               "ipv6_address_mode": None, "subnetpool_id": None, "service_types": [],
               "segment_id": None, "dns_publish_fixed_ip": False}
        out.update(self.common(s))
        return out

    def router_view(self, r):
        out = {"id": r["id"], "name": r["name"], "status": "ACTIVE", "admin_state_up": True,
               "external_gateway_info": None, "routes": [], "distributed": False, "ha": False,
               "availability_zones": ["nova"], "availability_zone_hints": [], "flavor_id": None}
        out.update(self.common(r))
        return out

    def port_view(self, p):
        bound = bool(p.get("binding:host_id"))
        out = {"id": p["id"], "name": p["name"], "network_id": p["network_id"],
               "mac_address": p["mac_address"], "admin_state_up": p.get("admin_state_up", True),
               "status": p["status"], "device_id": p.get("device_id", ""),
               "device_owner": p.get("device_owner", ""),
               "fixed_ips": [dict(i) for i in p["fixed_ips"]],
               "security_groups": list(p["security_groups"]), "allowed_address_pairs": [],
               "extra_dhcp_opts": [], "binding:vnic_type": "normal",
               "binding:host_id": p.get("binding:host_id", ""),
               "binding:vif_type": "ovs" if bound else "unbound",
               "binding:vif_details": {}, "binding:profile": {},
               "port_security_enabled": p.get("port_security_enabled", True),
               "dns_name": "", "qos_policy_id": None, "qos_network_policy_id": None,
               "propagate_uplink_status": False}
        out.update(self.common(p))
        return out

    def rule_view(self, r):
        out = {"id": r["id"], "security_group_id": r["security_group_id"], "direction": r["direction"],
               "ethertype": r["ethertype"], "protocol": r["protocol"],
               "port_range_min": r["port_range_min"], "port_range_max": r["port_range_max"],
               "remote_ip_prefix": r["remote_ip_prefix"], "remote_group_id": r["remote_group_id"],
               "remote_address_group_id": None, "normalized_cidr": r["remote_ip_prefix"],
               "belongs_to_default_sg": state.STORE.data["security_groups"].get(
                   r["security_group_id"], {}).get("name") == "default"}
        out.update(self.common(r))
        out["description"] = r.get("description") or ""
        return out

    def sg_view(self, g):
        out = {"id": g["id"], "name": g["name"], "stateful": g.get("stateful", True), "shared": False,
               "security_group_rules": [self.rule_view(r) for r in state.STORE.data["sg_rules"].values()
                                        if r["security_group_id"] == g["id"]]}
        out.update(self.common(g))
        return out

    # ---- ports ----------------------------------------------------------------
    def used_ips(self, subnet_id):
        return {i["ip_address"] for p in state.STORE.data["ports"].values() for i in p["fixed_ips"]
                if i["subnet_id"] == subnet_id}

    def make_port(self, network_id, fixed_ips, security_groups, project, name="", description="",
                  extra=None):
        """Create a port in state.STORE (caller holds state.STORE.lock). fixed_ips: None
        or [{subnet_id?, ip_address?}]; security_groups None -> default."""
        net = state.STORE.data["networks"].get(network_id)
        if net is None:
            raise ApiError(404, "Network %s could not be found." % network_id, kind="NetworkNotFound")
        if security_groups is None:
            security_groups = [state.CFG.default_sg_id]
        if not isinstance(security_groups, list):
            raise ApiError(400, "Invalid input for security_groups.", kind="InvalidInput")
        for gid in security_groups:
            if gid not in state.STORE.data["security_groups"]:
                raise ApiError(404, "Security group %s does not exist" % gid, kind="SecurityGroupNotFound")
        requests = fixed_ips if fixed_ips else [{}]
        chosen = []
        taken = set()
        for r in requests:
            sid = r.get("subnet_id")
            if sid is None:
                if r.get("ip_address"):
                    sid = next((s for s in net["subnets"] if ipaddress.ip_address(r["ip_address"]) in
                                ipaddress.ip_network(state.STORE.data["subnets"][s]["cidr"])), None)
                    if sid is None:
                        raise ApiError(400, "IP address %s is not a valid IP for the specified network."
                                       % r["ip_address"], kind="InvalidIpForNetwork")
                else:
                    sid = net["subnets"][0]
            sub = state.STORE.data["subnets"].get(sid)
            if sub is None or sub["network_id"] != network_id:
                raise ApiError(400, "Invalid input for operation: Failed to create port on network %s, "
                                    "because fixed_ips included invalid subnet %s." % (network_id, sid),
                               kind="InvalidInput")
            cidr = ipaddress.ip_network(sub["cidr"])
            used = self.used_ips(sid) | taken
            if r.get("ip_address"):
                try:
                    ip = ipaddress.ip_address(r["ip_address"])
                except ValueError:
                    raise ApiError(400, "Invalid input for operation: %s is not a valid IP address."
                                   % r["ip_address"], kind="InvalidInput")
                if ip not in cidr or ip in (cidr.network_address, cidr.broadcast_address):
                    raise ApiError(400, "IP address %s is not a valid IP for the specified subnet." % ip,
                                   kind="InvalidIpForSubnet")
                if str(ip) in used or str(ip) == sub["gateway_ip"]:
                    raise ApiError(409, "IP address %s already allocated in subnet %s" % (ip, sid),
                                   kind="IpAddressAlreadyAllocated")
                addr = str(ip)
            else:
                # The next free address after the last one handed out,
                # wrapping: Trove deletes an instance's port right after
                # asking Nova to delete the server, and a new guest given
                # that address at once collided with the old guest host
                # still going down ("Address already in use").
                pool = sub["allocation_pools"][0]
                start = ipaddress.ip_address(pool["start"])
                end = ipaddress.ip_address(pool["end"])
                size = int(end) - int(start) + 1
                last = sub.get("last_allocated")
                first = (int(ipaddress.ip_address(last)) - int(start) + 1) % size if last else 0
                addr = None
                for k in range(size):
                    cur = start + (first + k) % size
                    if str(cur) not in used:
                        addr = str(cur)
                        break
                if addr is None:
                    raise ApiError(409, "No more IP addresses available on network %s." % network_id,
                                   kind="IpAddressGenerationFailure")
            taken.add(addr)
            if not r.get("ip_address"):
                sub["last_allocated"] = addr
            chosen.append({"subnet_id": sid, "ip_address": addr})
        pid = str(uuid.uuid4())
        now = ts()
        p = {"id": pid, "name": name or "", "description": description or "", "network_id": network_id,
             "project_id": project, "mac_address": mac_for(pid), "fixed_ips": chosen,
             "security_groups": list(security_groups), "device_id": "", "device_owner": "",
             "status": "DOWN", "binding:host_id": "", "admin_state_up": True,
             "port_security_enabled": True, "created_at": now, "updated_at": now, "revision_number": 1}
        p.update(extra or {})
        state.STORE.data["ports"][pid] = p
        return p

    def port_create(self, req):
        body = json_body(req, "port")
        if not body.get("network_id"):
            raise ApiError(400, "Invalid input for operation: network_id is required.", kind="InvalidInput")
        extra = {}
        for k in ("device_id", "device_owner", "admin_state_up", "port_security_enabled",
                  "binding:host_id"):
            if k in body:
                extra[k] = body[k]
        with state.STORE.lock:
            fixed = body.get("fixed_ips")
            if fixed is not None and not isinstance(fixed, list):
                raise ApiError(400, "Invalid input for fixed_ips.", kind="InvalidInput")
            p = self.make_port(body["network_id"], fixed, body.get("security_groups"),
                               body.get("project_id") or body.get("tenant_id") or req.project,
                               name=body.get("name", ""), description=body.get("description", ""),
                               extra=extra)
            state.STORE.save()
            return 201, {"port": self.port_view(p)}

    def port_update(self, req, rid):
        body = json_body(req, "port")
        with state.STORE.lock:
            p = state.STORE.data["ports"].get(rid)
            if p is None:
                raise ApiError(404, "Port %s could not be found." % rid, kind="PortNotFound")
            if "security_groups" in body:
                for gid in body["security_groups"] or []:
                    if gid not in state.STORE.data["security_groups"]:
                        raise ApiError(404, "Security group %s does not exist" % gid,
                                       kind="SecurityGroupNotFound")
                p["security_groups"] = list(body["security_groups"] or [])
            for k in ("name", "description", "device_id", "device_owner", "admin_state_up",
                      "port_security_enabled", "binding:host_id"):
                if k in body:
                    p[k] = body[k]
            unknown = set(body) - {"security_groups", "name", "description", "device_id", "device_owner",
                                   "admin_state_up", "port_security_enabled", "binding:host_id"}
            if unknown:
                log("UNHANDLED network PUT port attributes %s (ignored)" % sorted(unknown))
            p["updated_at"] = ts()
            p["revision_number"] = p.get("revision_number", 1) + 1
            state.STORE.save()
            return 200, {"port": self.port_view(p)}

    def port_delete(self, req, rid):
        with state.STORE.lock:
            p = state.STORE.data["ports"].get(rid)
            if p is None:
                raise ApiError(404, "Port %s could not be found." % rid, kind="PortNotFound")
            if p.get("device_owner", "").startswith("network:router"):
                raise ApiError(409, "Port %s cannot be deleted directly via the port API: has device "
                                    "owner %s." % (rid, p["device_owner"]), kind="ServicePortInUse")
            del state.STORE.data["ports"][rid]
            for s in state.STORE.data["servers"].values():
                if rid in s["ports"]:
                    s["ports"].remove(rid)
            state.STORE.save()
        return 204, None

    # ---- security groups ------------------------------------------------------------
    def sg_create(self, req):
        body = json_body(req, "security_group")
        name = body.get("name", "")
        if name == "default":
            raise ApiError(409, "Default security group already exists.", kind="SecurityGroupDefaultAlreadyExists")
        with state.STORE.lock:
            g = state.STORE.new_security_group(name, body.get("description", ""),
                                         body.get("project_id") or body.get("tenant_id") or req.project)
            if "stateful" in body:
                g["stateful"] = parse_bool(body["stateful"])
            state.STORE.save()
            return 201, {"security_group": self.sg_view(g)}

    def sg_update(self, req, rid):
        body = json_body(req, "security_group")
        with state.STORE.lock:
            g = state.STORE.data["security_groups"].get(rid)
            if g is None:
                raise ApiError(404, "Security group %s does not exist" % rid, kind="SecurityGroupNotFound")
            for k in ("name", "description"):
                if k in body:
                    g[k] = body[k]
            g["updated_at"] = ts()
            state.STORE.save()
            return 200, {"security_group": self.sg_view(g)}

    def sg_delete(self, req, rid):
        with state.STORE.lock:
            g = state.STORE.data["security_groups"].get(rid)
            if g is None:
                raise ApiError(404, "Security group %s does not exist" % rid, kind="SecurityGroupNotFound")
            if g["name"] == "default":
                raise ApiError(409, "Insufficient rights for removing default security group.",
                               kind="SecurityGroupCannotRemoveDefault")
            users = [p["id"] for p in state.STORE.data["ports"].values() if rid in p["security_groups"]]
            if users:
                raise ApiError(409, "Security Group %s in use." % rid, kind="SecurityGroupInUse")
            del state.STORE.data["security_groups"][rid]
            for k in [k for k, r in state.STORE.data["sg_rules"].items() if r["security_group_id"] == rid]:
                del state.STORE.data["sg_rules"][k]
            state.STORE.save()
        return 204, None

    def rule_create(self, req):
        body = json_body(req, "security_group_rule")
        with state.STORE.lock:
            gid = body.get("security_group_id")
            g = state.STORE.data["security_groups"].get(gid or "")
            if g is None:
                raise ApiError(404, "Security group %s does not exist" % gid, kind="SecurityGroupNotFound")
            direction = body.get("direction")
            if direction not in ("ingress", "egress"):
                raise ApiError(400, "Invalid input for direction. Reason: %s is not in valid_values."
                               % direction, kind="InvalidInput")
            ethertype = body.get("ethertype", "IPv4")
            if ethertype not in ("IPv4", "IPv6"):
                raise ApiError(400, "Invalid input for ethertype.", kind="InvalidInput")
            protocol = body.get("protocol")
            protocol = None if protocol in (None, "", "any") else str(protocol).lower()
            pmin, pmax = body.get("port_range_min"), body.get("port_range_max")
            try:
                pmin = None if pmin is None else int(pmin)
                pmax = None if pmax is None else int(pmax)
            except (TypeError, ValueError):
                raise ApiError(400, "Invalid value for port", kind="InvalidInput")
            if (pmin is not None or pmax is not None) and protocol is None:
                raise ApiError(400, "Must also specify protocol if port range is given.",
                               kind="SecurityGroupProtocolRequiredWithPorts")
            if protocol in ("tcp", "udp", "6", "17"):
                if pmin is not None and pmax is None:
                    pmax = pmin
                if pmin is not None and not (1 <= pmin <= pmax <= 65535):
                    raise ApiError(400, "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                                   kind="SecurityGroupInvalidPortRange")
            prefix = body.get("remote_ip_prefix")
            if prefix:
                try:
                    net = ipaddress.ip_network(prefix, strict=False)
                except ValueError:
                    raise ApiError(400, "Invalid input for remote_ip_prefix.", kind="InvalidInput")
                if ("IPv%d" % net.version) != ethertype:
                    raise ApiError(400, "Conflicting value ethertype %s for CIDR %s" % (ethertype, prefix),
                                   kind="SecurityGroupRuleParameterConflict")
                prefix = str(net)
            remote_group = body.get("remote_group_id")
            if remote_group and remote_group not in state.STORE.data["security_groups"]:
                raise ApiError(404, "Security group %s does not exist" % remote_group,
                               kind="SecurityGroupNotFound")
            key = (gid, direction, ethertype, protocol, pmin, pmax, prefix, remote_group)
            for r in state.STORE.data["sg_rules"].values():
                if (r["security_group_id"], r["direction"], r["ethertype"], r["protocol"],
                        r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"],
                        r["remote_group_id"]) == key:
                    raise ApiError(409, "Security group rule already exists. Rule id is %s." % r["id"],
                                   kind="SecurityGroupRuleExists")
            now = ts()
            rid = str(uuid.uuid4())
            r = {"id": rid, "security_group_id": gid, "direction": direction, "ethertype": ethertype,
                 "protocol": protocol, "port_range_min": pmin, "port_range_max": pmax,
                 "remote_ip_prefix": prefix, "remote_group_id": remote_group,
                 "description": body.get("description"), "project_id": g["project_id"],
                 "created_at": now, "updated_at": now, "revision_number": 0}
            state.STORE.data["sg_rules"][rid] = r
            state.STORE.save()
            return 201, {"security_group_rule": self.rule_view(r)}

    def rule_delete(self, req, rid):
        with state.STORE.lock:
            if state.STORE.data["sg_rules"].pop(rid, None) is None:
                raise ApiError(404, "Security group rule %s does not exist" % rid,
                               kind="SecurityGroupRuleNotFound")
            state.STORE.save()
        return 204, None

    # ---- floating ips, extensions ---------------------------------------------------
    def fip_list(self, req):
        # No external network exists, so there are never floating IPs; the
        # filters are still checked so that a typo shows.
        for key in req.query:
            if key not in self.NON_FILTERS | {"port_id", "floating_network_id", "floating_ip_address",
                                              "fixed_ip_address", "router_id", "status", "project_id",
                                              "tenant_id", "id", "description"}:
                log("UNHANDLED network filter %r" % key)
                raise ApiError(400, "%s is not a valid filter" % key, kind="HTTPBadRequest")
        return 200, {"floatingips": []}

    def fip_create(self, req):
        body = json_body(req, "floatingip")
        raise ApiError(404, "External network %s is not found (the stand-in has no external "
                            "network)." % body.get("floating_network_id"), kind="ExternalNetworkNotFound")

    def fip_missing(self, req, rid):
        raise ApiError(404, "Floating IP %s could not be found" % rid, kind="FloatingIPNotFound")

    def ext_view(self, e):
        return {"alias": e[0], "name": e[1], "description": e[2], "updated": "2024-01-01T00:00:00-00:00",
                "links": []}

    def ext_list(self, req):
        return 200, {"extensions": [self.ext_view(e) for e in NEUTRON_EXTENSIONS]}

    def ext_show(self, req, alias):
        for e in NEUTRON_EXTENSIONS:
            if e[0] == alias:
                return 200, {"extension": self.ext_view(e)}
        raise ApiError(404, "Extension with alias %s does not exist" % alias, kind="ExtensionNotFound")


NETWORK = Network()
