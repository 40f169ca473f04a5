"""What each API of the OpenStack STAND-IN is built from: the parsed request,
the errors a handler raises (ApiError answers with its status, Unhandled is
logged and answered 404), route matching, the 401 body, query and
microversion parsing, and the Service base class (prefix, URLs, the
Nova/Cinder error body).
"""

import re

from . import state


class ApiError(Exception):
    def __init__(self, status, message, kind=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class Unhandled(Exception):
    pass


def ver_tuple(s):
    m = re.fullmatch(r"(\d+)\.(\d+)", s.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2))


def ver_str(v):
    return "%d.%d" % v


def first_query(q, key, default=None):
    vals = q.get(key)
    return vals[0] if vals else default


def int_query(q, key, default):
    raw = first_query(q, key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "Invalid %s value %r: not an integer" % (key, raw))


def parse_bool(v):
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("1", "true", "yes", "on", "t", "y")


class Request:
    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    @property
    def token(self):
        return bool((self.headers.get("X-Auth-Token") or "").strip())


def json_body(req, key):
    if not isinstance(req.body, dict) or not isinstance(req.body.get(key), dict):
        raise ApiError(400, "Invalid input: the request body must be a JSON object with %r" % key)
    return req.body[key]


def match_routes(routes, method, path):
    for m, pattern, fn in routes:
        mt = re.fullmatch(pattern, path)
        if mt:
            if m != method:
                continue
            return fn, mt.groupdict()
    return None, None


UNAUTHORIZED = {"error": {"code": 401, "title": "Unauthorized",
                          "message": "The request you have made requires authentication."}}


class Service:
    prefix = ""
    routes = ()

    def url(self, *parts):
        return state.CFG.public_url + self.prefix + "".join(parts)

    def error_body(self, e):
        key = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 406: "notAcceptable",
               409: "conflictingRequest", 413: "overLimit"}.get(e.status, "computeFault")
        return {key: {"code": e.status, "message": e.message}}
