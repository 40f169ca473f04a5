"""The HTTP server of the OpenStack STAND-IN: one port, four path prefixes,
one module per API (nova.py /compute, cinder.py /volume, neutron.py
/network, glance.py /image); GET / answers the catalog.

Version discovery documents at /compute, /compute/v2.1, /volume, /volume/v3,
/network, /image and /image/versions answer WITHOUT a token (as the real
services do and as keystoneauth's unauthenticated discovery expects).
Every other request must carry X-Auth-Token, else 401 (each API's
handle() checks it after its discovery documents). The token is NOT
validated: Keystone is not this stand-in's job (keystonemiddleware would
sit in front of the real services). Tokens are never logged.

Request and reply bodies are JSON (Glance's error pages are text, like
the real Glance's). One log line per request (method, path, status) goes to
stderr; requests no handler knows are logged with "UNHANDLED" and answered
404; a stand-in bug answers 500 with the traceback on stderr.
"""

import json
import re
import signal
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import state
from .api import ApiError, Request, Unhandled
from .cinder import VOLUME
from .common import log
from .glance import IMAGE
from .neutron import NETWORK
from .nova import COMPUTE

SERVICES = (COMPUTE, VOLUME, NETWORK, IMAGE)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openstack-standin/1"

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        started = time.time()
        split = urllib.parse.urlsplit(self.path)
        # "//" collapses: Trove's nova_compute_url / cinder_url overrides
        # build ".../v2.1//<project>/" URLs
        path = re.sub(r"/{2,}", "/", urllib.parse.unquote(split.path))
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body, headers = 500, None, {}
        try:
            parsed = None
            if raw:
                try:
                    parsed = json.loads(raw.decode("utf-8"))
                except ValueError:
                    raise ApiError(400, "Malformed request body: not JSON")
            req = Request(self.command, path, query, self.headers, parsed)
            status, body, headers = self.dispatch(req, path)
        except ApiError as e:
            status, body = e.status, {"error": {"code": e.status, "message": e.message}}
        except Unhandled as e:
            log("UNHANDLED %s %s%s%s" % (self.command, path, "?" + split.query if split.query else "",
                                         " (%s)" % e if str(e) else ""))
            status, body = 404, {"error": {"code": 404, "title": "Not Found", "message":
                                 "openstack stand-in: no handler for %s %s" % (self.command, path)}}
        except Exception as e:   # a stand-in bug: answer 500 and show it
            traceback.print_exc()
            status, body = 500, {"error": {"code": 500, "message": "stand-in error: %s" % e}}
        if body is None or status == 204:
            payload, ctype = b"", None
        elif isinstance(body, bytes):
            payload, ctype = body, "text/plain; charset=UTF-8"
        else:
            payload, ctype = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        req_id = "req-" + str(uuid.uuid4())
        self.send_header("x-openstack-request-id", req_id)
        self.send_header("x-compute-request-id", req_id)
        for k, v in headers.items():
            self.send_header(k, v)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Keystone uri="%s"' % state.CFG.public_url)
        if payload:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
        log("%s %s%s %d %.0fms" % (self.command, path, "?" + split.query if split.query else "",
                                   status, (time.time() - started) * 1000))

    def dispatch(self, req, path):
        if path in ("", "/"):
            return 200, {"standin": "openstack (Nova, Cinder, Neutron, Glance subset) for tests",
                         "catalog": catalog()}, {}
        for svc in SERVICES:
            if path == svc.prefix or path.startswith(svc.prefix + "/"):
                return svc.handle(req, path[len(svc.prefix):])
        raise Unhandled()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


def catalog():
    return [{"type": "compute", "name": "nova", "url": state.CFG.public_url + "/compute/v2.1"},
            {"type": "volumev3", "name": "cinderv3", "url": state.CFG.public_url + "/volume/v3"},
            {"type": "network", "name": "neutron", "url": state.CFG.public_url + "/network"},
            {"type": "image", "name": "glance", "url": state.CFG.public_url + "/image"}]


def make_server(cfg):
    server = ThreadingHTTPServer((cfg.host, cfg.port), Handler)
    server.daemon_threads = True
    return server


def serve(server):
    """Serve until SIGTERM (or Ctrl-C)."""
    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
