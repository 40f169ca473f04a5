"""Block Storage API v3 STAND-IN (not Cinder), under /volume/v3, following
docs.openstack.org/api-ref/block-storage/v3: volumes, actions os-extend,
types, limits, os-quota-sets, os-availability-zone (snapshots and backups
list empty). Microversions 3.0 .. MAX_CINDER (OpenStack-API-Version:
volume X.Y). A project segment after /v3 (/volume/v3/<project_id>/volumes)
is accepted but not needed: cinderclient with a keystone session uses the
catalog URL as it is. A volume is a sparse file STATE/volumes/<id>.img
(truncate; never written).
"""

import json
import os
import threading
import uuid

from . import state
from .api import (UNAUTHORIZED, ApiError, Service, Unhandled, first_query, int_query,
                  json_body, match_routes, parse_bool, ver_str, ver_tuple)
from .common import log, stable_id, ts
from .state import volume_file

MAX_CINDER = (3, 70)

CINDER_COLLECTIONS = {"volumes", "types", "limits", "os-availability-zone", "os-quota-sets",
                      "extensions", "snapshots", "backups", "attachments", "messages", "groups",
                      "group_types", "qos-specs", "os-volume-transfer", "volume-transfers",
                      "scheduler-stats", "os-services", "workers", "manageable_volumes",
                      "resource_filters", "clusters", "default-types"}


class Volume(Service):
    prefix = "/volume"

    def __init__(self):
        self.routes = [
            ("GET", r"/volumes", self.vol_list),
            ("GET", r"/volumes/detail", self.vol_detail),
            ("POST", r"/volumes", self.vol_create),
            ("GET", r"/volumes/(?P<vid>[^/]+)", self.vol_show),
            ("PUT", r"/volumes/(?P<vid>[^/]+)", self.vol_update),
            ("DELETE", r"/volumes/(?P<vid>[^/]+)", self.vol_delete),
            ("POST", r"/volumes/(?P<vid>[^/]+)/action", self.vol_action),
            ("GET", r"/types", self.type_list),
            ("GET", r"/types/default", self.type_default),
            ("GET", r"/types/(?P<tid>[^/]+)", self.type_show),
            ("GET", r"/types/(?P<tid>[^/]+)/extra_specs", self.type_extra_specs),
            ("GET", r"/limits", self.limits),
            ("GET", r"/os-availability-zone", self.az_list),
            ("GET", r"/os-quota-sets/(?P<pid>[^/]+)", self.quotas),
            ("GET", r"/extensions", self.extensions),
            ("GET", r"/snapshots", self.empty("snapshots")),
            ("GET", r"/snapshots/detail", self.empty("snapshots")),
            ("GET", r"/backups", self.empty("backups")),
            ("GET", r"/backups/detail", self.empty("backups")),
        ]

    def empty(self, key):
        return lambda req: (200, {key: []})

    def version_doc(self):
        return {"id": "v3.0", "status": "CURRENT", "version": ver_str(MAX_CINDER),
                "min_version": "3.0", "updated": "2023-08-31T00:00:00Z",
                "links": [{"rel": "describedby", "type": "text/html",
                           "href": "https://docs.openstack.org/"},
                          {"rel": "self", "href": self.url("/v3/")}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.volume+json;version=3"}]}

    def handle(self, req, sub):
        if req.method == "GET" and sub in ("", "/", "/v3", "/v3/"):
            return (300 if sub in ("", "/") else 200), {"versions": [self.version_doc()]}, {}
        if not req.token:
            return 401, UNAUTHORIZED, {}
        if not sub.startswith("/v3/"):
            raise Unhandled()
        rest = sub[len("/v3"):]
        segs = rest.split("/")
        if len(segs) > 2 and segs[1] not in CINDER_COLLECTIONS:
            req.project = segs[1]
            rest = "/" + "/".join(segs[2:])
        else:
            req.project = state.CFG.project_id
        # OpenStack-API-Version: volume X.Y (cinder ignores other service
        # names, e.g. the "volumev3 latest" Trove's admin client sends).
        req.version = (3, 0)
        for part in (req.headers.get("OpenStack-API-Version") or "").split(","):
            bits = part.strip().split()
            if len(bits) == 2 and bits[0].lower() == "volume":
                v = MAX_CINDER if bits[1].lower() == "latest" else ver_tuple(bits[1])
                if v is None or not ((3, 0) <= v <= MAX_CINDER):
                    e = ApiError(406, "Version %s is not supported by the API. Minimum is 3.0 and "
                                      "maximum is %s." % (bits[1], ver_str(MAX_CINDER)))
                    return e.status, self.error_body(e), {}
                req.version = v
        headers = {"OpenStack-API-Version": "volume " + ver_str(req.version),
                   "Vary": "OpenStack-API-Version"}
        fn, args = match_routes(self.routes, req.method, rest.rstrip("/") or "/")
        if fn is None:
            raise Unhandled()
        try:
            status, body = fn(req, **args)
        except ApiError as e:
            return e.status, self.error_body(e), headers
        return status, body, headers

    def get_volume(self, vid):
        v = state.STORE.data["volumes"].get(vid)
        if v is None:
            raise ApiError(404, "Volume %s could not be found." % vid)
        return v

    def links(self, vid, project):
        return [{"rel": "self", "href": self.url("/v3/", project, "/volumes/", vid)},
                {"rel": "bookmark", "href": self.url("/", project, "/volumes/", vid)}]

    def vol_view(self, v, req, detail=True):
        out = {"id": v["id"], "name": v["name"], "links": self.links(v["id"], v["project_id"])}
        if not detail:
            return out
        vt = state.STORE.data["volume_types"].get(v["volume_type_id"], {})
        out.update({
            "status": v["status"], "size": v["size"], "availability_zone": v["availability_zone"],
            "created_at": v["created_at"], "updated_at": v["updated_at"],
            "attachments": [dict(a) for a in v["attachments"]], "description": v["description"],
            "volume_type": vt.get("name"), "snapshot_id": None, "source_volid": None,
            "metadata": dict(v["metadata"]), "user_id": v["user_id"], "bootable": v["bootable"],
            "encrypted": False, "replication_status": None, "consistencygroup_id": None,
            "multiattach": False, "migration_status": None,
            "os-vol-tenant-attr:tenant_id": v["project_id"],
            "os-vol-host-attr:host": "standin@file#standin",
            "os-vol-mig-status-attr:migstat": None, "os-vol-mig-status-attr:name_id": None,
        })
        if v.get("image_id"):
            out["volume_image_metadata"] = {"image_id": v["image_id"],
                                            "image_name": state.STORE.data["images"].get(v["image_id"], {}).get("name")}
        ver = req.version
        if ver >= (3, 13):
            out["group_id"] = None
        if ver >= (3, 21):
            out["provider_id"] = None
        if ver >= (3, 48):
            out["service_uuid"] = stable_id("cinder-volume", "standin")
            out["shared_targets"] = False
        if ver >= (3, 61):
            out["cluster_name"] = None
        if ver >= (3, 63):
            out["volume_type_id"] = v["volume_type_id"]
        if ver >= (3, 64):
            out["encryption_key_id"] = None
        if ver >= (3, 65):
            out["consumes_quota"] = True
        return out

    def filtered(self, req):
        q = req.query
        items = sorted(state.STORE.data["volumes"].values(), key=lambda v: (v["created_at"], v["id"]))
        for key in ("name", "status", "bootable"):
            if key in q:
                items = [v for v in items if str(v.get(key)) == q[key][0]]
        if "metadata" in q:
            try:
                want = json.loads(q["metadata"][0].replace("'", '"'))
            except ValueError:
                raise ApiError(400, "Invalid filter metadata")
            items = [v for v in items if all(v["metadata"].get(k) == x for k, x in want.items())]
        marker = first_query(q, "marker")
        if marker:
            ids = [v["id"] for v in items]
            if marker not in ids:
                raise ApiError(404, "Marker %s could not be found." % marker)
            items = items[ids.index(marker) + 1:]
        limit = int_query(q, "limit", None)
        if limit is not None:
            items = items[:limit]
        return items

    def vol_list(self, req):
        with state.STORE.lock:
            return 200, {"volumes": [self.vol_view(v, req, False) for v in self.filtered(req)]}

    def vol_detail(self, req):
        with state.STORE.lock:
            return 200, {"volumes": [self.vol_view(v, req) for v in self.filtered(req)]}

    def vol_show(self, req, vid):
        with state.STORE.lock:
            return 200, {"volume": self.vol_view(self.get_volume(vid), req)}

    def find_type(self, ref):
        types = state.STORE.data["volume_types"]
        if ref is None:
            return types[state.CFG.volume_type_id]
        if ref in types:
            return types[ref]
        for t in types.values():
            if t["name"] == ref:
                return t
        raise ApiError(404, "Volume type with name %s could not be found." % ref)

    def vol_create(self, req):
        body = json_body(req, "volume")
        try:
            size = int(body.get("size"))
        except (TypeError, ValueError):
            size = 0
        if size < 1:
            raise ApiError(400, "Invalid input received: 'size' must be an integer greater than 0")
        if size > state.CFG.max_volume_gib:
            raise ApiError(413, "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds "
                                "allowed gigabytes quota. Requested %sG, quota is %sG." % (size, state.CFG.max_volume_gib))
        for ref in ("snapshot_id", "source_volid", "backup_id", "consistencygroup_id", "group_id"):
            if body.get(ref):
                raise ApiError(404, "stand-in: %s %s could not be found (no snapshots, backups or "
                                    "groups exist here)" % (ref, body[ref]))
        with state.STORE.lock:
            vt = self.find_type(body.get("volume_type"))
            image_id = body.get("imageRef") or body.get("image_id")
            if image_id and image_id not in state.STORE.data["images"]:
                raise ApiError(400, "Invalid image identifier or unable to access requested image.")
            az = body.get("availability_zone")
            if az and az != "nova":
                raise ApiError(400, "Invalid input received: Availability zone '%s' is invalid." % az)
            now = ts("cinder")
            vid = str(uuid.uuid4())
            v = {"id": vid, "name": body.get("name"), "description": body.get("description"),
                 "size": size, "status": "creating", "availability_zone": "nova",
                 "volume_type_id": vt["id"], "metadata": dict(body.get("metadata") or {}),
                 "attachments": [], "bootable": "true" if image_id else "false",
                 "image_id": image_id, "project_id": req.project, "user_id": state.CFG.user_id,
                 "created_at": now, "updated_at": now}
            state.STORE.data["volumes"][vid] = v
            state.STORE.save()
            view = self.vol_view(v, req)
        if state.CFG.volume_delay <= 0:
            # --volume-delay 0: ready before the answer (fast tests)
            self.finish_create(vid)
            with state.STORE.lock:
                view = self.vol_view(state.STORE.data["volumes"][vid], req)
        else:
            timer = threading.Timer(state.CFG.volume_delay, self.finish_create, args=(vid,))
            timer.daemon = True
            timer.start()
        return 202, {"volume": view}

    def finish_create(self, vid):
        path = volume_file(vid)
        with state.STORE.lock:
            v = state.STORE.data["volumes"].get(vid)
            if v is None or v["status"] != "creating":
                return
            size = v["size"]
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.truncate(size * 1024 ** 3)   # sparse: nothing is written
            status = "available"
        except OSError as e:
            log("volume %s: cannot create %s: %s" % (vid, path, e))
            status = "error"
        with state.STORE.lock:
            v = state.STORE.data["volumes"].get(vid)
            if v is not None:
                v.update(status=status, updated_at=ts("cinder"))
                state.STORE.save()

    def vol_update(self, req, vid):
        body = json_body(req, "volume")
        with state.STORE.lock:
            v = self.get_volume(vid)
            for k in ("name", "description", "metadata"):
                if k in body:
                    v[k] = body[k]
            v["updated_at"] = ts("cinder")
            state.STORE.save()
            return 200, {"volume": self.vol_view(v, req)}

    def vol_delete(self, req, vid):
        with state.STORE.lock:
            v = self.get_volume(vid)
            if v["status"] not in ("available", "error", "error_restoring", "error_extending",
                                   "error_managing") or v["attachments"]:
                raise ApiError(400, "Invalid volume: Volume status must be available or error or "
                                    "error_restoring or error_extending or error_managing and must not "
                                    "be migrating, attached, belong to a group, have snapshots, awaiting "
                                    "a transfer, or be disassociated from snapshots after volume "
                                    "transfer.")
            self.remove(vid)
            state.STORE.save()
        return 202, None

    def vol_action(self, req, vid):
        if not isinstance(req.body, dict) or len(req.body) != 1:
            raise ApiError(400, "Invalid action body")
        action, arg = next(iter(req.body.items()))
        if action != "os-extend":
            raise Unhandled("volume action %r" % action)
        with state.STORE.lock:
            v = self.get_volume(vid)
            try:
                new = int((arg or {}).get("new_size"))
            except (TypeError, ValueError):
                raise ApiError(400, "Invalid input received: New size for extend must be specified as "
                                    "an integer.")
            if v["status"] == "in-use" and req.version < (3, 42):
                raise ApiError(400, "Invalid volume: Volume status must be 'available' to extend "
                                    "(in-use extend needs microversion 3.42).")
            if v["status"] not in ("available", "in-use"):
                raise ApiError(400, "Invalid volume: Volume status must be 'available' or 'in-use'.")
            if new <= v["size"]:
                raise ApiError(400, "Invalid input received: New size for extend must be greater than "
                                    "current size. (current: %s, extended: %s)." % (v["size"], new))
            with open(volume_file(vid), "r+b") as f:
                f.truncate(new * 1024 ** 3)
            v.update(size=new, updated_at=ts("cinder"))
            state.STORE.save()
        return 202, None

    # called by Compute under state.STORE.lock
    def attach(self, vid, sid, device, attachment_id):
        v = state.STORE.data["volumes"][vid]
        v["status"] = "in-use"
        v["attachments"].append({"id": vid, "attachment_id": attachment_id, "volume_id": vid,
                                 "server_id": sid, "host_name": "standin-host", "device": device,
                                 "attached_at": ts("cinder")})
        v["updated_at"] = ts("cinder")

    def detach(self, vid, sid):
        v = state.STORE.data["volumes"].get(vid)
        if v is None:
            return
        v["attachments"] = [a for a in v["attachments"] if a["server_id"] != sid]
        if not v["attachments"] and v["status"] == "in-use":
            v["status"] = "available"
        v["updated_at"] = ts("cinder")

    def remove(self, vid):
        state.STORE.data["volumes"].pop(vid, None)
        try:
            os.unlink(volume_file(vid))
        except FileNotFoundError:
            pass
        log("volume %s deleted" % vid)

    def type_view(self, t):
        return {"id": t["id"], "name": t["name"], "description": t["description"],
                "is_public": t["is_public"], "extra_specs": dict(t["extra_specs"]),
                "qos_specs_id": None, "os-volume-type-access:is_public": t["is_public"]}

    def type_list(self, req):
        return 200, {"volume_types": [self.type_view(t) for t in state.STORE.data["volume_types"].values()]}

    def type_default(self, req):
        return 200, {"volume_type": self.type_view(state.STORE.data["volume_types"][state.CFG.volume_type_id])}

    def type_show(self, req, tid):
        t = state.STORE.data["volume_types"].get(tid)
        if t is None:
            raise ApiError(404, "Volume type %s could not be found." % tid)
        return 200, {"volume_type": self.type_view(t)}

    def type_extra_specs(self, req, tid):
        return 200, {"extra_specs": dict(self.type_show(req, tid)[1]["volume_type"]["extra_specs"])}

    def usage(self):
        vols = list(state.STORE.data["volumes"].values())
        return len(vols), sum(v["size"] for v in vols)

    def limits(self, req):
        with state.STORE.lock:
            n, gib = self.usage()
        return 200, {"limits": {"rate": [], "absolute": {
            "totalSnapshotsUsed": 0, "maxTotalBackups": 10, "maxTotalVolumeGigabytes": state.CFG.max_volume_gib,
            "maxTotalSnapshots": 10, "maxTotalBackupGigabytes": 1000, "totalBackupGigabytesUsed": 0,
            "maxTotalVolumes": 100, "totalVolumesUsed": n, "totalBackupsUsed": 0,
            "totalGigabytesUsed": gib}}}

    def quotas(self, req, pid):
        with state.STORE.lock:
            n, gib = self.usage()
        usage = parse_bool(first_query(req.query, "usage", "false"))

        def q(limit, used):
            return {"limit": limit, "in_use": used, "reserved": 0, "allocated": 0} if usage else limit
        return 200, {"quota_set": {"id": pid, "volumes": q(100, n), "gigabytes": q(state.CFG.max_volume_gib, gib),
                                   "snapshots": q(10, 0), "backups": q(10, 0),
                                   "backup_gigabytes": q(1000, 0), "per_volume_gigabytes": q(-1, 0),
                                   "groups": q(10, 0)}}

    def az_list(self, req):
        return 200, {"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True}}]}

    def extensions(self, req):
        return 200, {"extensions": []}


VOLUME = Volume()
