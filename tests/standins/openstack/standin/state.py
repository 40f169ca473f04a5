"""State of the OpenStack STAND-IN: the store (memory, with a JSON snapshot in
STATE/state.json after each change, reloaded at start; servers caught
mid-operation come back ERROR), the seeded resources (flavors, image,
network, subnet, router and its interface port, default security group,
volume type; deterministic ids), and the paths under STATE (volume files,
guest directories).

CFG and STORE are set by openstack_standin.main(); the other modules read
them as state.CFG and state.STORE.
"""

import hashlib
import ipaddress
import json
import os
import threading
import uuid

from .common import log, stable_id, ts

CFG = None          # argparse namespace, set by openstack_standin.main()
STORE = None        # Store

COLLECTIONS = ("flavors", "images", "networks", "subnets", "routers", "ports",
               "security_groups", "sg_rules", "volume_types", "volumes", "servers",
               "keypairs", "server_groups")
SEEDED = ("flavors", "images", "networks", "subnets", "routers", "volume_types")


class Store:
    def __init__(self, cfg):
        self.lock = threading.RLock()
        self.op_locks = {}
        self.cfg = cfg
        self.data = {c: {} for c in COLLECTIONS}
        self.path = os.path.join(cfg.state, "state.json")
        self.seed()
        self.reload()

    def seed(self):
        c = self.cfg
        d = self.data
        created = "2024-01-01T00:00:00Z"
        for f in c.flavor_list:
            d["flavors"][f["id"]] = f
        d["images"][c.image_id] = {
            "id": c.image_id, "name": c.image_name, "status": "active", "visibility": "public",
            "protected": False, "os_hidden": False, "tags": list(c.image_tags),
            "container_format": "bare", "disk_format": "qcow2", "min_disk": 0, "min_ram": 0,
            "size": None, "virtual_size": None, "checksum": None, "os_hash_algo": None,
            "os_hash_value": None, "owner": c.project_id, "created_at": created,
            "updated_at": created}
        net = ipaddress.ip_network(c.network_cidr, strict=False)
        gateway = str(net.network_address + 1)
        d["networks"][c.network_id] = {
            "id": c.network_id, "name": c.network_name, "project_id": c.project_id,
            # The operator's provider network, shared with every project (a
            # tenant's Horizon lists shared networks and its own).
            "shared": True, "subnets": [c.subnet_id], "created_at": created, "updated_at": created}
        d["subnets"][c.subnet_id] = {
            "id": c.subnet_id, "name": c.network_name + "-subnet", "network_id": c.network_id,
            "project_id": c.project_id, "cidr": str(net), "ip_version": net.version,
            "gateway_ip": gateway,
            "allocation_pools": [{"start": str(net.network_address + 10),
                                  "end": str(net.broadcast_address - 1)}],
            "created_at": created, "updated_at": created}
        d["routers"][c.router_id] = {
            "id": c.router_id, "name": c.network_name + "-router", "project_id": c.project_id,
            "created_at": created, "updated_at": created}
        # The router's interface on the subnet (Trove's enable_access_check
        # looks for it): a port like any other, owned by the router.
        d["ports"][c.router_port_id] = {
            "id": c.router_port_id, "name": "", "description": "", "network_id": c.network_id,
            "project_id": c.project_id, "mac_address": mac_for(c.router_port_id),
            "fixed_ips": [{"subnet_id": c.subnet_id, "ip_address": gateway}],
            "security_groups": [], "device_id": c.router_id,
            "device_owner": "network:router_interface", "status": "ACTIVE",
            "binding:host_id": "standin-host", "admin_state_up": True,
            "port_security_enabled": False, "created_at": created, "updated_at": created,
            "revision_number": 1}
        d["volume_types"][c.volume_type_id] = {
            "id": c.volume_type_id, "name": "__DEFAULT__", "description": "Default Volume Type",
            "is_public": True, "extra_specs": {}, "qos_specs_id": None,
            "os-volume-type-access:is_public": True}
        if c.default_sg_id not in d["security_groups"]:
            self.new_security_group("default", "Default security group", c.project_id,
                                    sg_id=c.default_sg_id, created=created)

    def new_security_group(self, name, description, project_id, sg_id=None, created=None):
        sg_id = sg_id or str(uuid.uuid4())
        now = created or ts()
        self.data["security_groups"][sg_id] = {
            "id": sg_id, "name": name, "description": description, "project_id": project_id,
            "stateful": True, "created_at": now, "updated_at": now, "revision_number": 1}
        # Neutron adds the two egress rules to every new group (and, for the
        # default group, ingress from members of the group).
        specs = [("egress", "IPv4", None), ("egress", "IPv6", None)]
        if name == "default":
            specs += [("ingress", "IPv4", sg_id), ("ingress", "IPv6", sg_id)]
        for direction, ethertype, remote_group in specs:
            rid = stable_id("sg-rule", "%s/%s/%s" % (sg_id, direction, ethertype)) if created else str(uuid.uuid4())
            self.data["sg_rules"][rid] = {
                "id": rid, "security_group_id": sg_id, "direction": direction,
                "ethertype": ethertype, "protocol": None, "port_range_min": None,
                "port_range_max": None, "remote_ip_prefix": None,
                "remote_group_id": remote_group, "description": None,
                "project_id": project_id, "created_at": now, "updated_at": now,
                "revision_number": 0}
        return self.data["security_groups"][sg_id]

    def reload(self):
        if not os.path.isfile(self.path):
            return
        try:
            with open(self.path) as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            log("state: cannot reload %s (%s); starting empty" % (self.path, e))
            return
        for coll in COLLECTIONS:
            if coll in SEEDED:
                continue
            for k, v in (old.get(coll) or {}).items():
                self.data[coll].setdefault(k, v)
        # keep the routers' interface ports of the new seed, drop stale ones
        for pid, p in list(self.data["ports"].items()):
            if p.get("device_owner") == "network:router_interface" and pid != self.cfg.router_port_id:
                del self.data["ports"][pid]
            elif p["network_id"] not in self.data["networks"]:
                log("state: dropping port %s of unknown network %s" % (pid, p["network_id"]))
                del self.data["ports"][pid]
        for s in self.data["servers"].values():
            if s["status"] in ("BUILD", "REBOOT", "HARD_REBOOT") or s.get("task_state"):
                s.update(status="ERROR", vm_state="error", task_state=None, power_state=0,
                         fault=fault("stand-in restarted while the server was %s"
                                     % (s.get("task_state") or s["status"])))
        for v in self.data["volumes"].values():
            if v["status"] in ("creating", "deleting", "extending"):
                v["status"] = "available" if os.path.exists(volume_file(v["id"])) else "error"
        log("state: reloaded %d servers, %d volumes, %d ports from %s" % (
            len(self.data["servers"]), len(self.data["volumes"]), len(self.data["ports"]), self.path))
        self.save()

    def save(self):
        with self.lock:
            tmp = self.path + ".tmp"
            # 0600: servers keep their user_data, which holds Trove's
            # injected guest config (broker credentials, instance key).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)

    def op_lock(self, server_id):
        with self.lock:
            return self.op_locks.setdefault(server_id, threading.Lock())


def fault(message, code=500, details=""):
    return {"code": code, "created": ts(), "message": message, "details": details}


def mac_for(port_id):
    h = hashlib.sha256(port_id.encode()).digest()
    return "fa:16:3e:%02x:%02x:%02x" % (h[0], h[1], h[2])


def volume_file(volume_id):
    return os.path.join(CFG.state, "volumes", "%s.img" % volume_id)


def guest_dir(server_id):
    return os.path.join(CFG.state, "guests", server_id)


def seeds():
    return {"flavors": [{"id": f["id"], "name": f["name"], "vcpus": f["vcpus"], "ram": f["ram"],
                         "disk": f["disk"]} for f in CFG.flavor_list],
            "network": {"id": CFG.network_id, "name": CFG.network_name},
            "subnet": {"id": CFG.subnet_id, "cidr": CFG.network_cidr},
            "router": {"id": CFG.router_id, "interface_port_id": CFG.router_port_id},
            "image": {"id": CFG.image_id, "name": CFG.image_name, "tags": CFG.image_tags},
            "default_security_group_id": CFG.default_sg_id,
            "volume_type": {"id": CFG.volume_type_id, "name": "__DEFAULT__"},
            "project_id": CFG.project_id}
