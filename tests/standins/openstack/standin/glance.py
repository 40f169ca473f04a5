"""Image API v2 STAND-IN (not Glance), under /image/v2, following
docs.openstack.org/api-ref/image/v2: images list (tag/status/name/
visibility/owner filters, limit/marker/sort) and show, image tags,
schemas/image(s). Errors are text pages, as Glance's are.
"""

import urllib.parse

from . import state
from .api import UNAUTHORIZED, ApiError, Service, Unhandled, first_query, int_query, match_routes


def _nullable(t):
    return {"type": [t, "null"]}


IMAGE_SCHEMA_PROPERTIES = {
    "id": {"type": "string", "description": "An identifier for the image",
           "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
    "name": dict(_nullable("string"), description="Descriptive name for the image", maxLength=255),
    "status": {"type": "string", "readOnly": True, "description": "Status of the image",
               "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing",
                        "pending_delete", "deactivated"]},
    "visibility": {"type": "string", "description": "Scope of image accessibility",
                   "enum": ["community", "public", "private", "shared"]},
    "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
    "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
    "checksum": dict(_nullable("string"), readOnly=True, maxLength=32),
    "os_hash_algo": dict(_nullable("string"), readOnly=True, maxLength=64),
    "os_hash_value": dict(_nullable("string"), readOnly=True, maxLength=128),
    "owner": dict(_nullable("string"), maxLength=255),
    "size": dict(_nullable("integer"), readOnly=True),
    "virtual_size": dict(_nullable("integer"), readOnly=True),
    "container_format": dict(_nullable("string"), enum=[None, "ami", "ari", "aki", "bare", "ovf", "ova",
                                                         "docker", "compressed"]),
    "disk_format": dict(_nullable("string"), enum=[None, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw",
                                                    "qcow2", "vdi", "iso", "ploop"]),
    "created_at": {"type": "string", "readOnly": True},
    "updated_at": {"type": "string", "readOnly": True},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
    "direct_url": {"type": "string", "readOnly": True},
    "min_ram": {"type": "integer"},
    "min_disk": {"type": "integer"},
    "self": {"type": "string", "readOnly": True},
    "file": {"type": "string", "readOnly": True},
    "stores": {"type": "string", "readOnly": True},
    "schema": {"type": "string", "readOnly": True},
    "locations": {"type": "array", "items": {"type": "object"}},
}


class Image(Service):
    prefix = "/image"

    def __init__(self):
        self.routes = [
            ("GET", r"/v2/images", self.image_list),
            ("GET", r"/v2/images/(?P<iid>[^/]+)", self.image_show),
            ("PUT", r"/v2/images/(?P<iid>[^/]+)/tags/(?P<tag>[^/]+)", self.tag_add),
            ("DELETE", r"/v2/images/(?P<iid>[^/]+)/tags/(?P<tag>[^/]+)", self.tag_delete),
            ("GET", r"/v2/schemas/image", self.schema_image),
            ("GET", r"/v2/schemas/images", self.schema_images),
        ]

    def error_body(self, e):
        # Glance answers errors as webob's text pages, not JSON
        title = {400: "Bad Request", 404: "Not Found", 409: "Conflict"}.get(e.status, "Error")
        return ("%d %s\n\n%s\n\n   " % (e.status, title, e.message)).encode()

    def versions(self):
        cur = [("v2.16", "CURRENT")] + [("v2.%d" % n, "SUPPORTED") for n in range(15, -1, -1)]
        return {"versions": [{"id": i, "status": st, "links": [{"rel": "self", "href": self.url("/v2/")}]}
                             for i, st in cur]}

    def handle(self, req, sub):
        if req.method == "GET" and sub in ("", "/"):
            return 300, self.versions(), {}
        if req.method == "GET" and sub in ("/versions", "/versions/"):
            return 200, self.versions(), {}
        if not req.token:
            return 401, UNAUTHORIZED, {}
        req.project = state.CFG.project_id
        fn, args = match_routes(self.routes, req.method, sub.rstrip("/"))
        if fn is None:
            raise Unhandled()
        try:
            status, body = fn(req, **args)
        except ApiError as e:
            return e.status, self.error_body(e), {}
        return status, body, {}

    def view(self, i):
        out = dict(i)
        out["tags"] = list(i["tags"])
        out.update({"self": "/v2/images/%s" % i["id"], "file": "/v2/images/%s/file" % i["id"],
                    "schema": "/v2/schemas/image"})
        return out

    def image_list(self, req):
        q = req.query
        with state.STORE.lock:
            items = list(state.STORE.data["images"].values())
        for key in ("name", "status", "visibility", "owner", "container_format", "disk_format", "id"):
            if key in q:
                items = [i for i in items if str(i.get(key)) == q[key][0]]
        if "visibility" not in q:
            items = [i for i in items if i["visibility"] != "community"]
        if "tag" in q:
            need = set(q["tag"])
            items = [i for i in items if need <= set(i["tags"])]
        keys = []
        for spec in ",".join(q.get("sort", [])).split(","):
            if spec:
                k, _, d = spec.partition(":")
                keys.append((k, d or "desc"))
        for k, d in zip(q.get("sort_key", []), q.get("sort_dir", []) + ["desc"] * 10):
            keys.append((k, d))
        for k, d in reversed(keys or [("created_at", "desc")]):
            if k not in IMAGE_SCHEMA_PROPERTIES:
                raise ApiError(400, "Invalid sort key: %s" % k)
            items.sort(key=lambda i: (i.get(k) is None, str(i.get(k)), i["id"]), reverse=(d == "desc"))
        marker = first_query(q, "marker")
        if marker:
            ids = [i["id"] for i in items]
            if marker not in ids:
                raise ApiError(400, "Invalid marker. Image %s could not be found." % marker)
            items = items[ids.index(marker) + 1:]
        limit = int_query(q, "limit", 25)
        page = items[:limit]
        body = {"images": [self.view(i) for i in page], "first": "/v2/images",
                "schema": "/v2/schemas/images"}
        if len(items) > limit and page:
            nq = [(k, v) for k, vals in q.items() if k != "marker" for v in vals] + [("marker", page[-1]["id"])]
            body["next"] = "/v2/images?" + urllib.parse.urlencode(nq)
        return 200, body

    def get_image(self, iid):
        i = state.STORE.data["images"].get(iid)
        if i is None:
            raise ApiError(404, "No image found with ID %s" % iid)
        return i

    def image_show(self, req, iid):
        with state.STORE.lock:
            return 200, self.view(self.get_image(iid))

    def tag_add(self, req, iid, tag):
        with state.STORE.lock:
            i = self.get_image(iid)
            if tag not in i["tags"]:
                i["tags"].append(tag)
            state.STORE.save()
        return 204, None

    def tag_delete(self, req, iid, tag):
        with state.STORE.lock:
            i = self.get_image(iid)
            if tag not in i["tags"]:
                raise ApiError(404, "Tag %s not found" % tag)
            i["tags"].remove(tag)
            state.STORE.save()
        return 204, None

    def image_schema(self):
        return {"name": "image", "properties": IMAGE_SCHEMA_PROPERTIES,
                "additionalProperties": {"type": "string"},
                "links": [{"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"},
                          {"rel": "describedby", "href": "{schema}"}]}

    def schema_image(self, req):
        return 200, self.image_schema()

    def schema_images(self, req):
        return 200, {"name": "images", "properties": {
            "images": {"type": "array", "items": self.image_schema()},
            "schema": {"type": "string"}, "first": {"type": "string"}, "next": {"type": "string"}},
            "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                      {"rel": "describedby", "href": "{schema}"}]}


IMAGE = Image()
