"""Compute API v2.1 STAND-IN (not Nova), under /compute/v2.1, following
docs.openstack.org/api-ref/compute: microversions 2.1 .. MAX_NOVA
(X-OpenStack-Nova-API-Version or OpenStack-API-Version: compute X.Y;
"latest"; out of range -> 406). Servers, flavors (+os-extra_specs),
os-volume_attachments, os-interface, os-keypairs, os-server-groups,
os-availability-zone, limits.

Servers: POST /servers records the server (status BUILD), binds its ports,
marks its block_device_mapping_v2 volumes in-use, then a thread writes
the guest directory (guestdir.py; personality is refused from 2.57 as Nova
does, honoured below it) and runs
    HYPERVISOR up <server-id> <guest-dir>
(hypervisor.py). Exit 0 -> ACTIVE, else ERROR with fault.message = the
last stderr line. reboot -> REBOOT, HYPERVISOR reboot, ACTIVE. DELETE ->
task_state deleting, HYPERVISOR down, then the server is gone (404): ports
Nova created are deleted, ports given to it are unbound, volumes with
delete_on_termination are deleted (as Nova does), others detached.
"""

import base64
import datetime
import binascii
import hashlib
import ipaddress
import re
import secrets
import threading
import time
import traceback
import uuid

from . import state
from .api import (UNAUTHORIZED, ApiError, Service, Unhandled, first_query, int_query,
                  json_body, match_routes, parse_bool, ver_str, ver_tuple)
from .cinder import VOLUME
from .common import log, stable_id, ts
from .guestdir import prepare_guest_dir, write_meta
from .hypervisor import run_hypervisor
from .neutron import NETWORK
from .state import fault, guest_dir

MIN_NOVA = (2, 1)
MAX_NOVA = (2, 96)

NOVA_COLLECTIONS = {"servers", "flavors", "os-keypairs", "os-server-groups", "os-availability-zone",
                    "limits", "extensions", "images", "os-hypervisors", "os-quota-sets",
                    "os-services", "os-aggregates", "os-simple-tenant-usage", "os-migrations",
                    "os-instance-actions", "os-volumes", "os-networks", "os-floating-ips",
                    "os-security-groups", "os-hosts", "os-assisted-volume-snapshots"}


class Compute(Service):
    prefix = "/compute"

    def __init__(self):
        self.routes = [
            ("GET", r"/flavors", self.flavor_list),
            ("GET", r"/flavors/detail", self.flavor_detail),
            ("GET", r"/flavors/(?P<fid>[^/]+)", self.flavor_show),
            ("GET", r"/flavors/(?P<fid>[^/]+)/os-extra_specs", self.flavor_extra_specs),
            ("GET", r"/flavors/(?P<fid>[^/]+)/os-extra_specs/(?P<key>[^/]+)", self.flavor_extra_spec),
            ("GET", r"/servers", self.server_list),
            ("GET", r"/servers/detail", self.server_detail),
            ("POST", r"/servers", self.server_create),
            ("GET", r"/servers/(?P<sid>[^/]+)", self.server_show),
            ("PUT", r"/servers/(?P<sid>[^/]+)", self.server_update),
            ("DELETE", r"/servers/(?P<sid>[^/]+)", self.server_delete),
            ("POST", r"/servers/(?P<sid>[^/]+)/action", self.server_action),
            ("GET", r"/servers/(?P<sid>[^/]+)/metadata", self.server_metadata),
            ("GET", r"/servers/(?P<sid>[^/]+)/tags", self.server_tags),
            ("GET", r"/servers/(?P<sid>[^/]+)/os-volume_attachments", self.va_list),
            ("POST", r"/servers/(?P<sid>[^/]+)/os-volume_attachments", self.va_create),
            ("GET", r"/servers/(?P<sid>[^/]+)/os-volume_attachments/(?P<vid>[^/]+)", self.va_show),
            ("DELETE", r"/servers/(?P<sid>[^/]+)/os-volume_attachments/(?P<vid>[^/]+)", self.va_delete),
            ("GET", r"/servers/(?P<sid>[^/]+)/os-interface", self.if_list),
            ("POST", r"/servers/(?P<sid>[^/]+)/os-interface", self.if_create),
            ("GET", r"/servers/(?P<sid>[^/]+)/os-interface/(?P<pid>[^/]+)", self.if_show),
            ("DELETE", r"/servers/(?P<sid>[^/]+)/os-interface/(?P<pid>[^/]+)", self.if_delete),
            ("GET", r"/os-keypairs", self.kp_list),
            ("POST", r"/os-keypairs", self.kp_create),
            ("GET", r"/os-keypairs/(?P<name>[^/]+)", self.kp_show),
            ("DELETE", r"/os-keypairs/(?P<name>[^/]+)", self.kp_delete),
            ("GET", r"/os-server-groups", self.sg_list),
            ("POST", r"/os-server-groups", self.sg_create),
            ("GET", r"/os-server-groups/(?P<gid>[^/]+)", self.sg_show),
            ("DELETE", r"/os-server-groups/(?P<gid>[^/]+)", self.sg_delete),
            ("GET", r"/os-availability-zone", self.az_list),
            ("GET", r"/os-availability-zone/detail", self.az_list),
            ("GET", r"/os-simple-tenant-usage/(?P<tid>[^/]+)", self.usage_show),
            ("GET", r"/limits", self.limits),
            ("GET", r"/extensions", self.extensions),
        ]

    def version_doc(self):
        return {"id": "v2.1", "status": "CURRENT", "version": ver_str(MAX_NOVA),
                "min_version": ver_str(MIN_NOVA), "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": self.url("/v2.1/")},
                          {"rel": "describedby", "type": "text/html",
                           "href": "http://docs.openstack.org/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    def microversion(self, req):
        raw = None
        hdr = req.headers.get("OpenStack-API-Version")
        if hdr:
            for part in hdr.split(","):
                bits = part.strip().split()
                if len(bits) == 2 and bits[0].lower() == "compute":
                    raw = bits[1]
        if raw is None:
            raw = req.headers.get("X-OpenStack-Nova-API-Version")
        if raw is None:
            return MIN_NOVA
        if raw.strip().lower() == "latest":
            return MAX_NOVA
        v = ver_tuple(raw)
        if v is None:
            raise ApiError(400, "API Version String %s is of invalid format. Must be of format "
                                "MajorNum.MinorNum." % raw)
        if not (MIN_NOVA <= v <= MAX_NOVA):
            raise ApiError(406, "Version %s is not supported by the API. Minimum is %s and maximum "
                                "is %s." % (raw, ver_str(MIN_NOVA), ver_str(MAX_NOVA)))
        return v

    def handle(self, req, sub):
        if req.method == "GET" and sub in ("", "/"):
            return 200, {"versions": [self.version_doc()]}, {}
        if req.method == "GET" and sub in ("/v2.1", "/v2.1/"):
            return 200, {"version": self.version_doc()}, {}
        if not req.token:
            return 401, UNAUTHORIZED, {}
        if not sub.startswith("/v2.1/"):
            raise Unhandled()
        rest = sub[len("/v2.1"):]
        segs = rest.split("/")
        if len(segs) > 2 and segs[1] not in NOVA_COLLECTIONS:
            req.project = segs[1]
            rest = "/" + "/".join(segs[2:])
        else:
            req.project = state.CFG.project_id
        try:
            req.version = self.microversion(req)
        except ApiError as e:
            return e.status, self.error_body(e), {}
        vs = ver_str(req.version)
        headers = {"X-OpenStack-Nova-API-Version": vs, "OpenStack-API-Version": "compute " + vs,
                   "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"}
        fn, args = match_routes(self.routes, req.method, rest.rstrip("/") or "/")
        if fn is None:
            raise Unhandled()
        try:
            status, body = fn(req, **args)
        except ApiError as e:
            return e.status, self.error_body(e), headers
        return status, body, headers

    # ---- flavors --------------------------------------------------------
    def flavor_links(self, fid):
        return [{"rel": "self", "href": self.url("/v2.1/flavors/", fid)},
                {"rel": "bookmark", "href": self.url("/flavors/", fid)}]

    def get_flavor(self, fid, status=404):
        f = state.STORE.data["flavors"].get(fid)
        if f is None:
            raise ApiError(status, "Flavor %s could not be found." % fid)
        return f

    def flavor_view(self, f, v, detail=True):
        out = {"id": f["id"], "name": f["name"], "links": self.flavor_links(f["id"])}
        if v >= (2, 55):
            out["description"] = f.get("description")
        if not detail:
            return out
        out.update({"ram": f["ram"], "vcpus": f["vcpus"], "disk": f["disk"],
                    "OS-FLV-EXT-DATA:ephemeral": f.get("ephemeral", 0),
                    "OS-FLV-DISABLED:disabled": False,
                    "swap": f.get("swap", 0) if v >= (2, 75) else (f.get("swap") or ""),
                    "rxtx_factor": 1.0, "os-flavor-access:is_public": True})
        if v >= (2, 61):
            out["extra_specs"] = dict(f.get("extra_specs") or {})
        return out

    def flavors_filtered(self, req):
        items = sorted(state.STORE.data["flavors"].values(), key=lambda f: f["id"])
        min_disk = first_query(req.query, "minDisk")
        min_ram = first_query(req.query, "minRam")
        if min_disk:
            items = [f for f in items if f["disk"] >= int_query(req.query, "minDisk", 0)]
        if min_ram:
            items = [f for f in items if f["ram"] >= int_query(req.query, "minRam", 0)]
        marker = first_query(req.query, "marker")
        if marker:
            ids = [f["id"] for f in items]
            if marker not in ids:
                raise ApiError(400, "marker [%s] not found" % marker)
            items = items[ids.index(marker) + 1:]
        limit = int_query(req.query, "limit", None)
        if limit is not None:
            items = items[:limit]
        return items

    def flavor_list(self, req):
        return 200, {"flavors": [self.flavor_view(f, req.version, False) for f in self.flavors_filtered(req)]}

    def flavor_detail(self, req):
        return 200, {"flavors": [self.flavor_view(f, req.version) for f in self.flavors_filtered(req)]}

    def flavor_show(self, req, fid):
        return 200, {"flavor": self.flavor_view(self.get_flavor(fid), req.version)}

    def flavor_extra_specs(self, req, fid):
        return 200, {"extra_specs": dict(self.get_flavor(fid).get("extra_specs") or {})}

    def flavor_extra_spec(self, req, fid, key):
        specs = self.get_flavor(fid).get("extra_specs") or {}
        if key not in specs:
            raise ApiError(404, "Flavor %s has no extra specs with key %s." % (fid, key))
        return 200, {key: specs[key]}

    # ---- servers: views ---------------------------------------------------
    def get_server(self, sid):
        s = state.STORE.data["servers"].get(sid)
        if s is None:
            raise ApiError(404, "Instance %s could not be found." % sid)
        return s

    def server_links(self, sid):
        return [{"rel": "self", "href": self.url("/v2.1/servers/", sid)},
                {"rel": "bookmark", "href": self.url("/servers/", sid)}]

    def addresses(self, s):
        out = {}
        for pid in s["ports"]:
            p = state.STORE.data["ports"].get(pid)
            if p is None:
                continue
            net = state.STORE.data["networks"].get(p["network_id"], {"name": p["network_id"]})
            for ip in p["fixed_ips"]:
                out.setdefault(net["name"], []).append({
                    "version": ipaddress.ip_address(ip["ip_address"]).version,
                    "addr": ip["ip_address"], "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": p["mac_address"]})
        return out

    def sg_names(self, s):
        names = []
        for pid in s["ports"]:
            p = state.STORE.data["ports"].get(pid) or {}
            for gid in p.get("security_groups", []):
                g = state.STORE.data["security_groups"].get(gid)
                if g and g["name"] not in names:
                    names.append(g["name"])
        return [{"name": n} for n in names]

    def server_view(self, s, v):
        f = state.STORE.data["flavors"].get(s["flavor_id"], {"id": s["flavor_id"], "name": "", "ram": 0,
                                                       "vcpus": 0, "disk": 0})
        if v >= (2, 47):
            flavor = {"vcpus": f["vcpus"], "ram": f["ram"], "disk": f["disk"],
                      "ephemeral": f.get("ephemeral", 0), "swap": f.get("swap", 0),
                      "original_name": f["name"]}
            if v >= (2, 47):
                flavor["extra_specs"] = dict(f.get("extra_specs") or {})
        else:
            flavor = {"id": f["id"], "links": [{"rel": "bookmark", "href": self.url("/flavors/", f["id"])}]}
        image = ""
        if s.get("image_id"):
            image = {"id": s["image_id"], "links": [{"rel": "bookmark",
                                                       "href": self.url("/images/", s["image_id"])}]}
        host_id = hashlib.sha224((s["project_id"] + "standin-host").encode()).hexdigest()
        out = {
            "id": s["id"], "name": s["name"], "status": s["status"], "tenant_id": s["project_id"],
            "user_id": s["user_id"], "metadata": dict(s["metadata"]), "hostId": host_id,
            "image": image, "flavor": flavor, "created": s["created"], "updated": s["updated"],
            "addresses": self.addresses(s), "accessIPv4": "", "accessIPv6": "",
            "links": self.server_links(s["id"]), "OS-DCF:diskConfig": "MANUAL",
            "progress": 100 if s["status"] == "ACTIVE" else 0,
            "OS-EXT-AZ:availability_zone": s["availability_zone"],
            "config_drive": "True" if s.get("config_drive") else "",
            "key_name": s.get("key_name"),
            "OS-SRV-USG:launched_at": s.get("launched_at"), "OS-SRV-USG:terminated_at": None,
            "OS-EXT-SRV-ATTR:host": "standin-host",
            "OS-EXT-SRV-ATTR:instance_name": s["instance_name"],
            "OS-EXT-SRV-ATTR:hypervisor_hostname": "standin-host",
            "OS-EXT-STS:task_state": s.get("task_state"), "OS-EXT-STS:vm_state": s["vm_state"],
            "OS-EXT-STS:power_state": s["power_state"],
            "os-extended-volumes:volumes_attached": [
                dict({"id": b["id"]}, **({"delete_on_termination": b["delete_on_termination"]}
                                          if v >= (2, 3) else {}))
                for b in s["volumes"]],
            "security_groups": self.sg_names(s),
        }
        if v >= (2, 3):
            out.update({"OS-EXT-SRV-ATTR:reservation_id": s["reservation_id"],
                        "OS-EXT-SRV-ATTR:launch_index": 0,
                        "OS-EXT-SRV-ATTR:hostname": s["hostname"],
                        "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
                        "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                        "OS-EXT-SRV-ATTR:user_data": s.get("user_data")})
        if v >= (2, 9):
            out["locked"] = False
        if v >= (2, 16):
            out["host_status"] = "UP"
        if v >= (2, 19):
            out["description"] = s.get("description")
        if v >= (2, 26):
            out["tags"] = list(s.get("tags", []))
        if v >= (2, 63):
            out["trusted_image_certificates"] = None
        if v >= (2, 71):
            out["server_groups"] = [g["id"] for g in state.STORE.data["server_groups"].values()
                                    if s["id"] in g["members"]]
        if v >= (2, 73):
            out["locked_reason"] = None
        if v >= (2, 96):
            out["pinned_availability_zone"] = None
        if s.get("fault") and s["status"] in ("ERROR", "DELETED"):
            out["fault"] = dict(s["fault"])
        return out

    def servers_filtered(self, req):
        q = req.query
        # Nova's default order: created_at descending
        items = sorted(state.STORE.data["servers"].values(), key=lambda s: (s["created"], s["id"]), reverse=True)
        if "name" in q:
            rx = re.compile(q["name"][0])
            items = [s for s in items if rx.search(s["name"])]
        if "status" in q:
            wanted = {x.upper() for x in q["status"]}
            items = [s for s in items if s["status"] in wanted]
        if "tags" in q:
            need = set(",".join(q["tags"]).split(","))
            items = [s for s in items if need <= set(s.get("tags", []))]
        if "tags-any" in q:
            anyof = set(",".join(q["tags-any"]).split(","))
            items = [s for s in items if anyof & set(s.get("tags", []))]
        if "not-tags" in q:
            need = set(",".join(q["not-tags"]).split(","))
            items = [s for s in items if not need <= set(s.get("tags", []))]
        if "not-tags-any" in q:
            anyof = set(",".join(q["not-tags-any"]).split(","))
            items = [s for s in items if not anyof & set(s.get("tags", []))]
        for key in ("image", "flavor"):
            if key in q:
                items = [s for s in items if s.get(key + "_id") == q[key][0]]
        if "ip" in q:
            rx = re.compile(q["ip"][0])
            items = [s for s in items if any(rx.search(a["addr"]) for lst in self.addresses(s).values()
                                             for a in lst)]
        marker = first_query(q, "marker")
        if marker:
            ids = [s["id"] for s in items]
            if marker not in ids:
                raise ApiError(400, "marker [%s] not found" % marker)
            items = items[ids.index(marker) + 1:]
        limit = int_query(q, "limit", 1000)
        return items[:max(0, min(limit, 1000))]

    def server_list(self, req):
        with state.STORE.lock:
            return 200, {"servers": [{"id": s["id"], "name": s["name"], "links": self.server_links(s["id"])}
                                     for s in self.servers_filtered(req)]}

    def server_detail(self, req):
        with state.STORE.lock:
            return 200, {"servers": [self.server_view(s, req.version) for s in self.servers_filtered(req)]}

    def server_show(self, req, sid):
        with state.STORE.lock:
            return 200, {"server": self.server_view(self.get_server(sid), req.version)}

    def server_metadata(self, req, sid):
        with state.STORE.lock:
            return 200, {"metadata": dict(self.get_server(sid)["metadata"])}

    def server_tags(self, req, sid):
        with state.STORE.lock:
            return 200, {"tags": list(self.get_server(sid).get("tags", []))}

    def server_update(self, req, sid):
        body = json_body(req, "server")
        with state.STORE.lock:
            s = self.get_server(sid)
            for k in ("name", "description"):
                if k in body:
                    s[k] = body[k]
            s["updated"] = ts()
            state.STORE.save()
            return 200, {"server": self.server_view(s, req.version)}

    # ---- servers: create ------------------------------------------------------
    def server_create(self, req):
        body = json_body(req, "server")
        v = req.version
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "Invalid input for field/attribute name.")
        if "personality" in body and v >= (2, 57):
            raise ApiError(400, "Invalid input for field/attribute server. Value: %s. Additional "
                                "properties are not allowed ('personality' was unexpected)" % "...")
        if int(body.get("min_count", 1)) != 1 or int(body.get("max_count", 1)) != 1:
            raise ApiError(400, "stand-in: only min_count = max_count = 1 is supported")
        with state.STORE.lock:
            flavor_id = str(body.get("flavorRef", "")).rstrip("/").split("/")[-1]
            flavor = self.get_flavor(flavor_id, status=400)
            image_id = str(body.get("imageRef") or "").rstrip("/").split("/")[-1]
            bdms = body.get("block_device_mapping_v2") or []
            if not isinstance(bdms, list):
                raise ApiError(400, "Invalid input for field/attribute block_device_mapping_v2.")
            volumes = []
            boot_from_volume = False
            used_devices = {"/dev/vda"}
            for b in bdms:
                src, dst = b.get("source_type"), b.get("destination_type", "volume")
                if src == "image" and dst == "local":
                    image_id = image_id or b.get("uuid", "")
                    continue
                if src == "volume" and dst == "volume":
                    vol = state.STORE.data["volumes"].get(b.get("uuid") or "")
                    if vol is None:
                        raise ApiError(400, "Block Device Mapping is Invalid: failed to get volume %s."
                                       % b.get("uuid"))
                    if vol["status"] != "available":
                        raise ApiError(400, "Invalid volume: volume %s status must be 'available', "
                                            "but current status is: %s" % (vol["id"], vol["status"]))
                    boot = str(b.get("boot_index", "")) == "0"
                    boot_from_volume = boot_from_volume or boot
                    dev = b.get("device_name")
                    dev = "/dev/vda" if boot else ("/dev/" + dev.split("/")[-1] if dev else None)
                    volumes.append({"id": vol["id"], "device": dev, "boot_index": 0 if boot else None,
                                    "delete_on_termination": parse_bool(b.get("delete_on_termination", False))})
                    continue
                raise ApiError(400, "stand-in: block device mapping source_type=%s destination_type=%s is "
                                    "not supported" % (src, dst))
            for vol in volumes:
                if vol["device"] in (None, ) or (vol["device"] in used_devices and vol["boot_index"] != 0):
                    vol["device"] = next("/dev/vd%s" % c for c in "bcdefghijklmnop"
                                         if "/dev/vd%s" % c not in used_devices)
                used_devices.add(vol["device"])
            if image_id:
                if image_id not in state.STORE.data["images"]:
                    raise ApiError(400, "Image %s could not be found." % image_id)
            elif not boot_from_volume:
                raise ApiError(400, "Block Device Mapping is Invalid: Boot sequence for the instance and "
                                    "image/block device mapping combination is not valid.")
            key_name = body.get("key_name")
            if key_name and key_name not in state.STORE.data["keypairs"]:
                raise ApiError(400, "Invalid key_name provided.")
            az = body.get("availability_zone")
            if az and az.split(":")[0] not in ("nova", ""):
                raise ApiError(400, "The requested availability zone is not available")
            # networks
            networks = body.get("networks")
            if networks is None and v >= (2, 37):
                raise ApiError(400, "Invalid input for field/attribute server. Value: ... "
                                    "'networks' is a required property")
            plan = []   # ("port", port_id) | ("net", network_id, fixed_ip)
            if networks is None or networks == "auto":
                plan.append(("net", state.CFG.network_id, None))
            elif networks == "none":
                pass
            elif isinstance(networks, list):
                for n in networks:
                    if n.get("port"):
                        p = state.STORE.data["ports"].get(n["port"])
                        if p is None:
                            raise ApiError(400, "Port id %s could not be found." % n["port"])
                        if p.get("device_id"):
                            raise ApiError(409, "Port %s is still in use." % n["port"])
                        plan.append(("port", p["id"]))
                    elif n.get("uuid"):
                        if n["uuid"] not in state.STORE.data["networks"]:
                            raise ApiError(400, "Network %s could not be found." % n["uuid"])
                        plan.append(("net", n["uuid"], n.get("fixed_ip")))
                    else:
                        raise ApiError(400, "Bad networks format: network uuid is not in proper format")
            else:
                raise ApiError(400, "Invalid input for field/attribute networks.")
            # user data / personality
            user_data = body.get("user_data")
            user_data_raw = b""
            if user_data:
                if len(user_data) > 65535:
                    raise ApiError(400, "Invalid input for field/attribute user_data. Value: ... is too long")
                try:
                    user_data_raw = base64.b64decode(user_data, validate=True)
                except (binascii.Error, ValueError, TypeError):
                    raise ApiError(400, "Invalid input for field/attribute user_data. Value: ... is not a "
                                        "valid base64 string")
            personality = []
            for pf in body.get("personality") or []:
                try:
                    personality.append({"path": pf["path"], "content": base64.b64decode(pf["contents"]),
                                        "owner": None, "permissions": None, "append": False})
                except (KeyError, binascii.Error, ValueError, TypeError):
                    raise ApiError(400, "Personality content could not be decoded.")
            metadata = body.get("metadata") or {}
            if not isinstance(metadata, dict) or not all(isinstance(x, str) for x in
                                                          list(metadata) + list(metadata.values())):
                raise ApiError(400, "Invalid input for field/attribute metadata.")
            hints = (req.body.get("os:scheduler_hints") or req.body.get("OS-SCH-HNT:scheduler_hints") or {})
            group = None
            if hints.get("group"):
                group = state.STORE.data["server_groups"].get(hints["group"])
                if group is None:
                    raise ApiError(400, "Invalid server group %s" % hints["group"])
            # all valid: record
            sid = str(uuid.uuid4())
            now = ts()
            created_ports = []
            ports = []
            for item in plan:
                if item[0] == "port":
                    ports.append(item[1])
                else:
                    fixed = [{"ip_address": item[2]}] if item[2] else None
                    try:
                        p = NETWORK.make_port(item[1], fixed, None, req.project, name="",
                                              description="")
                    except ApiError as e:
                        for pid in created_ports:
                            state.STORE.data["ports"].pop(pid, None)
                        raise ApiError(400 if e.status == 404 else e.status, e.message)
                    created_ports.append(p["id"])
                    ports.append(p["id"])
            for pid in ports:
                p = state.STORE.data["ports"][pid]
                p.update(device_id=sid, device_owner="compute:" + (az or "nova"),
                         **{"binding:host_id": "standin-host", "updated_at": now})
            for vol in volumes:
                att_id = str(uuid.uuid4())
                vol["attachment_id"] = att_id
                VOLUME.attach(vol["id"], sid, vol["device"], att_id)
            index = len(state.STORE.data["servers"]) + 1
            s = {"id": sid, "name": name, "project_id": req.project,
                 "user_id": state.CFG.user_id,
                 "flavor_id": flavor["id"], "image_id": image_id, "status": "BUILD",
                 "vm_state": "building", "task_state": "scheduling", "power_state": 0,
                 "created": now, "updated": now, "launched_at": None, "metadata": dict(metadata),
                 "tags": list(body.get("tags") or []), "key_name": key_name,
                 "config_drive": parse_bool(body.get("config_drive")) if body.get("config_drive") else False,
                 "user_data": user_data or None, "availability_zone": az or "nova",
                 "ports": ports, "created_ports": created_ports, "volumes": volumes,
                 "description": body.get("description"), "fault": None,
                 "instance_name": "instance-%08x" % (int(time.time() * 1000) % 0xffffffff + index),
                 "reservation_id": "r-" + secrets.token_hex(4),
                 "hostname": re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "server",
                 "scheduler_hints": hints, "security_groups_requested":
                     [g.get("name") for g in body.get("security_groups") or []]}
            state.STORE.data["servers"][sid] = s
            if group is not None:
                group["members"].append(sid)
            state.STORE.save()
        threading.Thread(target=self.build, args=(sid, user_data_raw, personality), daemon=True).start()
        resp = {"id": sid, "links": self.server_links(sid), "OS-DCF:diskConfig": "MANUAL",
                "security_groups": [{"name": "default"}], "adminPass": secrets.token_urlsafe(9)}
        return 202, {"server": resp}

    def build(self, sid, user_data_raw, personality):
        lock = state.STORE.op_lock(sid)
        with lock:
            try:
                err = prepare_guest_dir(sid, user_data_raw, personality)
            except Exception as e:   # a stand-in bug: make it visible as a fault
                traceback.print_exc()
                err = "stand-in failed to prepare the guest directory: %s" % e
            with state.STORE.lock:
                s = state.STORE.data["servers"].get(sid)
                if s is None or s.get("task_state") == "deleting":
                    return
                if err:
                    log("server %s: %s" % (sid, err))
                    s.update(status="ERROR", vm_state="error", task_state=None, fault=fault(err),
                             updated=ts())
                    state.STORE.save()
                    return
                s.update(task_state="spawning", updated=ts())
                state.STORE.save()
            rc, last = run_hypervisor("up", sid, guest_dir(sid))
            with state.STORE.lock:
                s = state.STORE.data["servers"].get(sid)
                if s is None:
                    return
                if rc == 0:
                    s.update(status="ACTIVE", vm_state="active", power_state=1, launched_at=ts(),
                             updated=ts())
                    for pid in s["ports"]:
                        if pid in state.STORE.data["ports"]:
                            state.STORE.data["ports"][pid]["status"] = "ACTIVE"
                else:
                    s.update(status="ERROR", vm_state="error", power_state=0, updated=ts(),
                             fault=fault(last or "hypervisor up failed"))
                if s.get("task_state") != "deleting":
                    s["task_state"] = None
                state.STORE.save()

    # ---- servers: actions -------------------------------------------------------
    def server_action(self, req, sid):
        if not isinstance(req.body, dict) or len(req.body) != 1:
            raise ApiError(400, "Invalid action body")
        action, arg = next(iter(req.body.items()))
        with state.STORE.lock:
            s = self.get_server(sid)
            if action != "reboot":
                raise Unhandled("server action %r" % action)
            rtype = str((arg or {}).get("type", "SOFT")).upper()
            if rtype not in ("SOFT", "HARD"):
                raise ApiError(400, "Invalid input for field/attribute type.")
            busy = s.get("task_state")
            allowed = ("ACTIVE",) if rtype == "SOFT" else ("ACTIVE", "ERROR", "SHUTOFF", "REBOOT")
            if busy or s["status"] not in allowed:
                raise ApiError(409, "Cannot 'reboot' instance %s while it is in %s %s" % (
                    sid, "task_state" if busy else "vm_state", busy or s["vm_state"]))
            s.update(status="REBOOT" if rtype == "SOFT" else "HARD_REBOOT",
                     task_state="reboot_started" if rtype == "SOFT" else "reboot_started_hard",
                     updated=ts())
            state.STORE.save()
        threading.Thread(target=self.reboot, args=(sid,), daemon=True).start()
        return 202, None

    def reboot(self, sid):
        with state.STORE.op_lock(sid):
            with state.STORE.lock:
                if sid not in state.STORE.data["servers"]:
                    return
            write_meta(sid)
            rc, last = run_hypervisor("reboot", sid, guest_dir(sid))
            with state.STORE.lock:
                s = state.STORE.data["servers"].get(sid)
                if s is None:
                    return
                if rc == 0:
                    s.update(status="ACTIVE", vm_state="active", power_state=1, fault=None)
                else:
                    s.update(status="ERROR", vm_state="error", power_state=0,
                             fault=fault(last or "hypervisor reboot failed"))
                if s.get("task_state") != "deleting":
                    s["task_state"] = None
                s["updated"] = ts()
                state.STORE.save()

    def server_delete(self, req, sid):
        with state.STORE.lock:
            s = self.get_server(sid)
            if s.get("task_state") == "deleting":
                return 204, None
            s.update(task_state="deleting", updated=ts())
            state.STORE.save()
        threading.Thread(target=self.delete, args=(sid,), daemon=True).start()
        return 204, None

    def delete(self, sid):
        # Waits for a running build or reboot (each bounded by the timeout).
        with state.STORE.op_lock(sid):
            rc, last = run_hypervisor("down", sid, guest_dir(sid))
            with state.STORE.lock:
                s = state.STORE.data["servers"].get(sid)
                if s is None:
                    return
                if rc != 0:
                    s.update(status="ERROR", vm_state="error", task_state=None, updated=ts(),
                             fault=fault(last or "hypervisor down failed"))
                    state.STORE.save()
                    return
                for pid in s["ports"]:
                    p = state.STORE.data["ports"].get(pid)
                    if p is None:
                        continue
                    if pid in s["created_ports"]:
                        del state.STORE.data["ports"][pid]
                    else:
                        p.update(device_id="", device_owner="", status="DOWN", updated_at=ts(),
                                 **{"binding:host_id": ""})
                for b in s["volumes"]:
                    VOLUME.detach(b["id"], sid)
                    if b.get("delete_on_termination"):
                        VOLUME.remove(b["id"])
                for g in state.STORE.data["server_groups"].values():
                    if sid in g["members"]:
                        g["members"].remove(sid)
                del state.STORE.data["servers"][sid]
                state.STORE.op_locks.pop(sid, None)
                state.STORE.save()
        log("server %s deleted" % sid)

    # ---- volume attachments ---------------------------------------------------
    def va_view(self, sid, b, v):
        out = {"id": b["id"], "volumeId": b["id"], "serverId": sid, "device": b["device"]}
        if v >= (2, 70):
            out["tag"] = None
        if v >= (2, 79):
            out["delete_on_termination"] = b.get("delete_on_termination", False)
        if v >= (2, 89):
            out["attachment_id"] = b.get("attachment_id")
            out["bdm_uuid"] = stable_id("bdm", sid + b["id"])
            del out["id"]
        return out

    def va_list(self, req, sid):
        with state.STORE.lock:
            s = self.get_server(sid)
            return 200, {"volumeAttachments": [self.va_view(sid, b, req.version) for b in s["volumes"]]}

    def va_show(self, req, sid, vid):
        with state.STORE.lock:
            s = self.get_server(sid)
            for b in s["volumes"]:
                if b["id"] == vid:
                    return 200, {"volumeAttachment": self.va_view(sid, b, req.version)}
            raise ApiError(404, "Instance %s is not attached." % vid)

    def va_create(self, req, sid):
        body = json_body(req, "volumeAttachment")
        with state.STORE.lock:
            s = self.get_server(sid)
            if s.get("task_state") or s["status"] not in ("ACTIVE", "SHUTOFF"):
                raise ApiError(409, "Cannot 'attach_volume' instance %s while it is in vm_state %s"
                               % (sid, s["vm_state"]))
            vol = state.STORE.data["volumes"].get(body.get("volumeId") or "")
            if vol is None:
                raise ApiError(404, "Volume %s could not be found." % body.get("volumeId"))
            if vol["status"] != "available":
                raise ApiError(400, "Invalid volume: volume %s status must be 'available', but current "
                                    "status is: %s" % (vol["id"], vol["status"]))
            used = {b["device"] for b in s["volumes"]} | {"/dev/vda"}
            dev = body.get("device")
            dev = "/dev/" + dev.split("/")[-1] if dev else None
            if not dev or dev in used:
                dev = next("/dev/vd%s" % c for c in "bcdefghijklmnop" if "/dev/vd%s" % c not in used)
            b = {"id": vol["id"], "device": dev, "boot_index": None,
                 "delete_on_termination": parse_bool(body.get("delete_on_termination", False)),
                 "attachment_id": str(uuid.uuid4())}
            VOLUME.attach(vol["id"], sid, dev, b["attachment_id"])
            s["volumes"].append(b)
            s["updated"] = ts()
            state.STORE.save()
            view = self.va_view(sid, b, req.version)
        write_meta(sid)
        log("server %s: volume %s attached at %s (the hypervisor is not told; see meta.json)"
            % (sid, vol["id"], dev))
        return 200, {"volumeAttachment": view}

    def va_delete(self, req, sid, vid):
        with state.STORE.lock:
            s = self.get_server(sid)
            match = [b for b in s["volumes"] if b["id"] == vid]
            if not match:
                raise ApiError(404, "Volume %s is not attached to %s." % (vid, sid))
            if match[0].get("boot_index") == 0:
                raise ApiError(400, "Cannot detach a root device volume")
            s["volumes"] = [b for b in s["volumes"] if b["id"] != vid]
            VOLUME.detach(vid, sid)
            s["updated"] = ts()
            state.STORE.save()
        write_meta(sid)
        return 202, None

    # ---- interfaces -------------------------------------------------------------
    def if_view(self, p):
        return {"port_state": p["status"], "port_id": p["id"], "net_id": p["network_id"],
                "mac_addr": p["mac_address"],
                "fixed_ips": [{"subnet_id": i["subnet_id"], "ip_address": i["ip_address"]}
                              for i in p["fixed_ips"]]}

    def if_list(self, req, sid):
        with state.STORE.lock:
            s = self.get_server(sid)
            return 200, {"interfaceAttachments": [self.if_view(state.STORE.data["ports"][p]) for p in s["ports"]
                                                  if p in state.STORE.data["ports"]]}

    def if_show(self, req, sid, pid):
        with state.STORE.lock:
            s = self.get_server(sid)
            if pid not in s["ports"] or pid not in state.STORE.data["ports"]:
                raise ApiError(404, "Port %s is not attached" % pid)
            return 200, {"interfaceAttachment": self.if_view(state.STORE.data["ports"][pid])}

    def if_create(self, req, sid):
        body = json_body(req, "interfaceAttachment")
        with state.STORE.lock:
            s = self.get_server(sid)
            if body.get("port_id"):
                p = state.STORE.data["ports"].get(body["port_id"])
                if p is None:
                    raise ApiError(404, "Port %s could not be found." % body["port_id"])
                if p.get("device_id"):
                    raise ApiError(409, "Port %s is still in use." % p["id"])
            elif body.get("net_id"):
                fixed = [{"ip_address": i["ip_address"]} for i in body.get("fixed_ips") or []] or None
                p = NETWORK.make_port(body["net_id"], fixed, None, req.project, name="", description="")
                s["created_ports"].append(p["id"])
            else:
                p = NETWORK.make_port(state.CFG.network_id, None, None, req.project, name="", description="")
                s["created_ports"].append(p["id"])
            p.update(device_id=sid, device_owner="compute:nova",
                     status="ACTIVE" if s["status"] == "ACTIVE" else "DOWN",
                     **{"binding:host_id": "standin-host"})
            s["ports"].append(p["id"])
            state.STORE.save()
            view = self.if_view(p)
        write_meta(sid)
        return 200, {"interfaceAttachment": view}

    def if_delete(self, req, sid, pid):
        with state.STORE.lock:
            s = self.get_server(sid)
            if pid not in s["ports"]:
                raise ApiError(404, "Port %s is not attached" % pid)
            s["ports"].remove(pid)
            if pid in s["created_ports"]:
                state.STORE.data["ports"].pop(pid, None)
            elif pid in state.STORE.data["ports"]:
                state.STORE.data["ports"][pid].update(device_id="", device_owner="", status="DOWN")
            state.STORE.save()
        write_meta(sid)
        return 202, None

    # ---- keypairs, server groups, misc ------------------------------------------
    def kp_view(self, k, v, detail=True):
        out = {"name": k["name"], "public_key": k["public_key"], "fingerprint": k["fingerprint"]}
        if v >= (2, 2):
            out["type"] = k.get("type", "ssh")
        if detail:
            out.update({"user_id": k["user_id"], "created_at": k["created_at"], "deleted": False,
                        "deleted_at": None, "updated_at": None, "id": k["id"]})
        return out

    def kp_list(self, req):
        with state.STORE.lock:
            return 200, {"keypairs": [{"keypair": self.kp_view(k, req.version, False)}
                                      for k in state.STORE.data["keypairs"].values()]}

    def kp_show(self, req, name):
        with state.STORE.lock:
            k = state.STORE.data["keypairs"].get(name)
            if k is None:
                raise ApiError(404, "Keypair %s not found for user %s" % (name, state.CFG.user_id))
            return 200, {"keypair": self.kp_view(k, req.version)}

    def kp_create(self, req):
        body = json_body(req, "keypair")
        name = body.get("name")
        if not name:
            raise ApiError(400, "Invalid input for field/attribute name.")
        if not body.get("public_key"):
            raise ApiError(400, "stand-in: only importing a public_key is supported")
        parts = body["public_key"].split()
        try:
            blob = base64.b64decode(parts[1])
        except (IndexError, binascii.Error, ValueError):
            raise ApiError(400, "Keypair data is invalid: failed to generate fingerprint")
        fp = ":".join("%02x" % b for b in hashlib.md5(blob).digest())
        with state.STORE.lock:
            if name in state.STORE.data["keypairs"]:
                raise ApiError(409, "Key pair '%s' already exists." % name)
            k = {"id": len(state.STORE.data["keypairs"]) + 1, "name": name, "public_key": body["public_key"],
                 "fingerprint": fp, "type": body.get("type", "ssh"), "user_id": state.CFG.user_id,
                 "created_at": ts()}
            state.STORE.data["keypairs"][name] = k
            state.STORE.save()
            return (201 if req.version >= (2, 2) else 200), {"keypair": self.kp_view(k, req.version, False)}

    def kp_delete(self, req, name):
        with state.STORE.lock:
            if state.STORE.data["keypairs"].pop(name, None) is None:
                raise ApiError(404, "Keypair %s not found for user %s" % (name, state.CFG.user_id))
            state.STORE.save()
        return (204 if req.version >= (2, 2) else 202), None

    def sg_view(self, g, v):
        out = {"id": g["id"], "name": g["name"], "members": list(g["members"]), "metadata": {},
               "project_id": g["project_id"], "user_id": g["user_id"]}
        if v >= (2, 64):
            out["policy"] = g["policies"][0]
            out["rules"] = g.get("rules", {})
            del out["metadata"]
        else:
            out["policies"] = list(g["policies"])
        return out

    def sg_list(self, req):
        with state.STORE.lock:
            return 200, {"server_groups": [self.sg_view(g, req.version)
                                           for g in state.STORE.data["server_groups"].values()]}

    def sg_show(self, req, gid):
        with state.STORE.lock:
            g = state.STORE.data["server_groups"].get(gid)
            if g is None:
                raise ApiError(404, "Server group %s could not be found." % gid)
            return 200, {"server_group": self.sg_view(g, req.version)}

    def sg_create(self, req):
        body = json_body(req, "server_group")
        policies = body.get("policies") or ([body["policy"]] if body.get("policy") else [])
        allowed = {"affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"}
        if not body.get("name") or len(policies) != 1 or policies[0] not in allowed:
            raise ApiError(400, "Invalid input for field/attribute policies.")
        with state.STORE.lock:
            g = {"id": str(uuid.uuid4()), "name": body["name"], "policies": policies, "members": [],
                 "rules": body.get("rules") or {}, "project_id": req.project, "user_id": state.CFG.user_id}
            state.STORE.data["server_groups"][g["id"]] = g
            state.STORE.save()
            return 200, {"server_group": self.sg_view(g, req.version)}

    def sg_delete(self, req, gid):
        with state.STORE.lock:
            if state.STORE.data["server_groups"].pop(gid, None) is None:
                raise ApiError(404, "Server group %s could not be found." % gid)
            state.STORE.save()
        return 204, None

    def az_list(self, req):
        return 200, {"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True},
                                               "hosts": None}]}

    # ---- usage (Horizon's project Overview) ----------------------------
    @staticmethod
    def usage_time(raw, what):
        try:
            return datetime.datetime.fromisoformat(raw.rstrip("Z")).replace(tzinfo=None)
        except ValueError:
            raise ApiError(400, "Invalid input for field/attribute %s. Value: %s." % (what, raw))

    def usage_show(self, req, tid):
        """GET /os-simple-tenant-usage/{tenant_id}: a project's servers and
        their hours within [start, end]. Servers are forgotten when deleted
        here, so only live ones count (Nova also counts deleted ones). From
        2.40, paged by `marker` (an instance id) and `limit`, as Horizon's
        usage_get reads it: it asks again after the last server until a
        page has none."""
        q = req.query
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        start = self.usage_time(first_query(q, "start"), "start") if first_query(q, "start") else now
        end = self.usage_time(first_query(q, "end"), "end") if first_query(q, "end") else now
        if start > end:
            raise ApiError(400, "Invalid start time. The start time cannot occur after the end time.")
        servers = sorted((sv for sv in state.STORE.data["servers"].values()
                          if sv["project_id"] == tid and sv.get("launched_at")),
                         key=lambda sv: (sv["created"], sv["id"]))
        if req.version >= (2, 40):
            marker = first_query(q, "marker")
            if marker:
                ids = [sv["id"] for sv in servers]
                if marker not in ids:
                    raise ApiError(400, "Marker %s could not be found." % marker)
                servers = servers[ids.index(marker) + 1:]
            servers = servers[:int_query(q, "limit", 1000)]
        usages = []
        for sv in servers:
            launched = self.usage_time(sv["launched_at"], "launched_at")
            if launched > end:
                continue
            seconds = max(0.0, (min(end, now) - max(start, launched)).total_seconds())
            f = state.STORE.data["flavors"].get(sv["flavor_id"], {"name": "", "ram": 0, "vcpus": 0,
                                                                 "disk": 0})
            usages.append({"instance_id": sv["id"], "name": sv["name"], "tenant_id": tid,
                           "hours": seconds / 3600.0, "memory_mb": f["ram"], "local_gb": f["disk"],
                           "vcpus": f["vcpus"], "flavor": f["name"],
                           "started_at": launched.isoformat(), "ended_at": None,
                           "state": sv["vm_state"],
                           "uptime": int((now - launched).total_seconds())})
        if not usages:
            return 200, {"tenant_usage": {}}
        return 200, {"tenant_usage": {
            "tenant_id": tid, "start": start.isoformat(), "stop": end.isoformat(),
            "server_usages": usages,
            "total_hours": sum(u["hours"] for u in usages),
            "total_memory_mb_usage": sum(u["hours"] * u["memory_mb"] for u in usages),
            "total_local_gb_usage": sum(u["hours"] * u["local_gb"] for u in usages),
            "total_vcpus_usage": sum(u["hours"] * u["vcpus"] for u in usages)}}

    def limits(self, req):
        with state.STORE.lock:
            servers = list(state.STORE.data["servers"].values())
            fl = state.STORE.data["flavors"]
            cores = sum(fl.get(s["flavor_id"], {}).get("vcpus", 0) for s in servers)
            ram = sum(fl.get(s["flavor_id"], {}).get("ram", 0) for s in servers)
            absolute = {"maxTotalInstances": 100, "maxTotalCores": 200, "maxTotalRAMSize": 512000,
                        "maxServerMeta": 128, "maxImageMeta": 128, "maxPersonality": 5,
                        "maxPersonalitySize": 10240, "maxTotalKeypairs": 100, "maxServerGroups": 10,
                        "maxServerGroupMembers": 10, "totalInstancesUsed": len(servers),
                        "totalCoresUsed": cores, "totalRAMUsed": ram,
                        "totalServerGroupsUsed": len(state.STORE.data["server_groups"])}
            return 200, {"limits": {"rate": [], "absolute": absolute}}

    def extensions(self, req):
        return 200, {"extensions": []}


COMPUTE = Compute()
