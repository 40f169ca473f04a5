#!/usr/bin/env python3
"""K2HR3 STAND-IN for tests: not K2HR3, a test double of the parts of its
REST API a K2HDKC node uses with a role token (yahoojapan/k2hr3 api_role,
api_resource, api_extdata) and the plugin uses with a tenant's user token
(k2hr3_api src/routes userTokens, resource, policy, role), with state in
memory (store.py).

  k2hr3_standin.py --listen 127.0.0.1:0 --tenant T --role NAME
                   [--role-token TOKEN] [--server-port 8020]
                   [--server-ctlport 8021] [--slave-ctlport 8031]
                   [--automerge on|off] [--threads N] [--keystone-url URL]

A pre-made cluster, as an operator makes one by hand: the role NAME and
its slave role `NAME/slave` (K2HDKC DBaaS's `<cluster>/slave`), each with
a resource, a policy and a role token. Prints one JSON line when ready:
url, role_yrn, resource_yrn, role_token, extdata_url, and the same for the
slave role (slave_role_yrn, slave_resource_yrn, slave_role_token,
slave_extdata_url).

K2HR3 side, with a role token (`x-auth-token: R=<token>`):
  GET    /v1/extdata/<uri>/<registerpath>   (User-Agent extdata_k2hr3_trove;
         the pre-made roles' paths are <tenant>/<role>)
         -> k2hr3_api's k2hr3-init.sh.templ, expanded: K2HR3_ROLE_TOKEN,
            K2HR3_ROLE_NAME, K2HR3_ROLE_TENANT, K2HR3_API_HOST_URI,
            K2HR3_ERROR_MSG (only those lines here)
  PUT    /v1/role/<role yrn>?port=&cuk=&extra=&tag=
         adds the caller's source address as a host of the role
  DELETE /v1/role/<role yrn>?port=&cuk=               removes it
  GET    /v1/role/<role yrn>                          hosts of the role
  GET    /v1/resource/<resource yrn>   when the token's role has a policy
         allowing it: the k2hdkc.ini rendered from the roles' current
         hosts, {"result": true, "resource": "..."}. A slave resource is
         the template's SLAVE side: MODE = SLAVE, the slave control port,
         the servers, one [SLVNODE] per registered slave
         (CUSTOM_ID_SEED = its tag), no [K2HDKC].
K2HR3 side, with a user token (`x-auth-token: U=<token>`):
  POST   /v1/user/tokens  {"auth": {"tenantName": P}} with U=<Keystone
         token>: checked with Keystone (--keystone-url), scoped to the
         project it names; refused for any other project
  POST   /v1/resource | /v1/policy | /v1/role      create or update
  DELETE /v1/resource/<name> | /v1/policy/<name> | /v1/role/<name>
  GET    /v1/role/token/<role>?expire=N            a role token, registerpath
  DELETE /v1/role/token/<role token>
  Anything else is refused (404, or 400 naming the call).
Test controls (not K2HR3):
  POST /_standin/fault {"mode": "ok"|"down"|"error500"|"slow", "delay_s": N,
         "after": N (calls served first), "times": N (calls faulted, then ok)}
  POST /_standin/member {"ip": A, "port": N, "cuk": C, "tag": T}
         a host as if another node had registered from address A
  DELETE /_standin/member?cuk=C   removes it again
  POST /_standin/ports {"server_port": N, "server_ctlport": N, "slave_ctlport": N}
         the chmpx ports the pre-made resource renders (the template's
         keys an operator changes together with the configuration group)
  GET  /_standin/calls   recorded calls (method, path, query, source ip)
  GET  /_standin/state   every resource, policy and role, with host and
         token counts
"""

import argparse
import json
import secrets
import socket
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from render import render_ini  # noqa: F401 (test_template reads it here)
from store import Store

STORE = Store()
# The pre-made cluster's hosts are its roles' host lists (Store.premade).
STATE = {"hosts": [], "slaves": [], "calls": [], "mode": "ok", "delay": 5.0, "after": 0, "times": 0}
LOCK = STORE.lock


class Handler(BaseHTTPRequestHandler):
    cfg = None

    def log_message(self, fmt, *args):
        sys.stderr.write("k2hr3-standin: " + (fmt % args) + "\n")

    def reply(self, code, obj=None, text=None):
        body = (text if text is not None else json.dumps(obj)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if text is not None else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def record(self, url):
        with LOCK:
            STATE["calls"].append({"method": self.command, "path": url.path, "query": urllib.parse.parse_qs(url.query),
                                   "source_ip": self.client_address[0], "user_agent": self.headers.get("User-Agent")})

    def faulted(self, url):
        """Applies the fault mode to K2HR3 calls (not to the controls)."""
        if url.path.startswith("/_standin"):
            return False
        with LOCK:
            if STATE["after"] > 0:
                # A fault that starts after this many more calls.
                STATE["after"] -= 1
                return False
            mode = STATE["mode"]
            if STATE["times"] > 0:
                # A fault for this many calls, then none.
                STATE["times"] -= 1
                if STATE["times"] == 0:
                    STATE["mode"] = "ok"
        if mode == "down":
            # Like a dead server: close without answering.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if mode == "error500":
            self.reply(500, {"result": False, "message": "stand-in fault: internal error"})
            return True
        if mode == "slow":
            time.sleep(STATE["delay"])
        return False

    def answer(self, status_body):
        status, body = status_body
        if body is None:
            # K2HR3 answers a removal with 204 and no body.
            self.send_response(status)
            self.end_headers()
            return None
        return self.reply(status, body)

    def body(self):
        try:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        except ValueError:
            return None

    def role_call(self, role, q):
        """PUT (add the caller), DELETE (remove it), GET (list) on a role,
        with one of its role tokens."""
        if STORE.role_of(self.headers.get("x-auth-token", "")) is not role:
            return self.reply(401, {"result": False, "message": "role token is invalid"})
        if self.command == "GET":
            with LOCK:
                return self.reply(200, {"result": True, "role": {"hosts": {"ips": [
                    "%s %s %s %s" % (h["ip"], h["port"], h["cuk"], h["extra"]) for h in role.hosts]}}})
        try:
            port = int(q.get("port", "0"))
        except ValueError:
            return self.reply(400, {"result": False, "message": "port is not a number"})
        ident = (self.client_address[0], port, q.get("cuk", ""))
        entry = {"ip": ident[0], "port": port, "cuk": ident[2], "extra": q.get("extra", ""), "tag": q.get("tag", "")}
        with LOCK:
            known = [i for i, h in enumerate(role.hosts) if (h["ip"], h["port"], h["cuk"]) == ident]
            if self.command == "DELETE":
                role.hosts[:] = [h for h in role.hosts if (h["ip"], h["port"], h["cuk"]) != ident]
            elif known:
                # Registering again keeps the host where it was.
                role.hosts[known[0]] = entry
            else:
                role.hosts.append(entry)
        return self.answer((204, None) if self.command == "DELETE" else (201, {"result": True, "message": None}))

    def control(self, path, q):
        """The stand-in's own controls (not K2HR3), or False."""
        if self.command == "POST" and path == "/_standin/fault":
            body = self.body() or {}
            with LOCK:
                STATE["mode"] = body.get("mode", "ok")
                STATE["delay"] = float(body.get("delay_s", 5))
                STATE["after"] = int(body.get("after", 0))
                STATE["times"] = int(body.get("times", 0))
            return self.reply(200, {"result": True})
        if self.command == "POST" and path == "/_standin/member":
            body = self.body() or {}
            entry = {"ip": body["ip"], "port": int(body["port"]), "cuk": body["cuk"], "extra": "openstack-auto-v1",
                     "tag": body.get("tag", "")}
            with LOCK:
                STATE["hosts"].append(entry)
            return self.reply(201, {"result": True})
        if self.command == "POST" and path == "/_standin/ports":
            body = self.body() or {}
            with LOCK:
                for k in ("server_port", "server_ctlport", "slave_ctlport"):
                    if k in body:
                        setattr(self.cfg, k, int(body[k]))
            return self.reply(200, {"result": True})
        if self.command == "DELETE" and path == "/_standin/member":
            with LOCK:
                STATE["hosts"][:] = [h for h in STATE["hosts"] if h["cuk"] != q.get("cuk")]
            return self.reply(200, {"result": True})
        if self.command == "GET" and path == "/_standin/calls":
            with LOCK:
                return self.reply(200, {"result": True, "calls": STATE["calls"], "hosts": STATE["hosts"],
                                        "slaves": STATE["slaves"]})
        if self.command == "GET" and path == "/_standin/state":
            return self.reply(200, dict(STORE.state(), result=True))
        return False

    def provisioning(self, path, q, header):
        """User-token calls: user tokens, resources, policies, roles and
        role tokens (K2HR3's provisioning API), or False."""
        if path == "/v1/user/tokens" and self.command == "POST":
            return self.answer(STORE.issue_user_token(header, self.body()))
        if path.startswith("/v1/role/token/") and header.startswith("U="):
            rest = path[len("/v1/role/token/"):]
            if self.command == "GET":
                return self.answer(STORE.role_token(header, rest, q.get("expire")))
            if self.command == "DELETE":
                return self.answer(STORE.delete_role_token(header, rest))
        for kind in ("resource", "policy", "role"):
            base = "/v1/" + kind
            named = path.startswith(base + "/")
            if path != base and not named:
                continue
            if not header.startswith("U="):
                return False
            tenant = STORE.user(header)
            if tenant is None:
                return self.reply(401, {"result": False, "message": "token is not a scoped user token of this K2HR3"})
            if self.command == "POST" and path == base:
                return self.answer(STORE.post(tenant, kind, self.body()))
            if self.command == "DELETE" and named:
                return self.answer(STORE.delete(tenant, kind, path[len(base) + 1:]))
            return self.reply(400, {"result": False, "message": "%s %s is not an API of this stand-in" % (self.command, base)})
        return False

    def extdata(self, rest):
        """GET /v1/extdata/<uri>/<registerpath> (the pre-made roles' paths
        are <tenant>/<role>): k2hr3-init's variables for the role."""
        found = STORE.by_register_path(rest) or STORE.by_register_path(rest.split("/", 1)[-1])
        if found is None:
            return self.reply(404, {"result": False, "message": "no such register path"})
        if self.headers.get("User-Agent") != "extdata_k2hr3_trove":
            return self.reply(400, {"result": False, "message": "unknown user agent"})
        role, token = found
        text = ("#!/bin/sh\n# (the rest of k2hr3-init.sh is left out of the stand-in)\n"
                'K2HR3_ROLE_TOKEN="%s"\nK2HR3_ROLE_NAME="%s"\nK2HR3_ROLE_TENANT="%s"\n'
                'K2HR3_API_HOST_URI="%s"\nK2HR3_ERROR_MSG="null"\n') % (token, role.yrn, role.tenant, self.cfg.url)
        return self.reply(200, text=text)

    def resource(self, res, header):
        """GET /v1/resource/<yrn> with a role token whose policies allow it."""
        role = STORE.role_of(header)
        if role is None:
            return self.reply(401, {"result": False, "message": "role token is invalid"})
        if not STORE.readable(role, res):
            return self.reply(403, {"result": False, "message": "the role's policies do not allow reading " + res})
        text = STORE.render(res, self.cfg)
        if text is None:
            return self.reply(404, {"result": False, "message": "no such resource: " + res})
        return self.reply(200, {"result": True, "message": None, "resource": text})

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        self.record(url)
        if self.faulted(url):
            return
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        path = urllib.parse.unquote(url.path)
        header = self.headers.get("x-auth-token", "")
        done = self.control(path, q)
        if done is False:
            done = self.provisioning(path, q, header)
        if done is not False:
            return done
        if self.command == "GET" and path.startswith("/v1/extdata/"):
            return self.extdata(path[len("/v1/extdata/"):])
        if path.startswith("/v1/role/yrn:") and self.command in ("PUT", "DELETE", "GET"):
            role = STORE.roles.get(path[len("/v1/role/"):])
            if role is not None:
                return self.role_call(role, q)
        if self.command == "GET" and path.startswith("/v1/resource/yrn:"):
            return self.resource(path[len("/v1/resource/"):], header)
        return self.reply(404, {"result": False, "message": "no such path: " + path})

    do_GET = do_PUT = do_DELETE = do_POST = handle_any


def main():
    p = argparse.ArgumentParser(description="K2HR3 stand-in for tests")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--tenant", default="trove")
    p.add_argument("--role", required=True)
    p.add_argument("--role-token", default=None)
    p.add_argument("--server-port", type=int, default=8020)
    p.add_argument("--server-ctlport", type=int, default=8021)
    p.add_argument("--slave-ctlport", type=int, default=8031)
    p.add_argument("--automerge", choices=("on", "off"), default="on",
                   help="the template's AUTOMERGE; off as packaging/k2hr3 ships it, "
                        "where the agent and the cluster taskmanager run the merges")
    p.add_argument("--threads", type=int, default=8, choices=range(1, 65), metavar="N",
                   help="the template's SOCKTHREADCNT and MQTHREADCNT (chmpx's worker threads)")
    p.add_argument("--keystone-url", default=None,
                   help="Keystone to check the tokens of POST /v1/user/tokens against (without it, refused)")
    cfg = p.parse_args()
    host, port = cfg.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    cfg.url = "http://%s:%d" % (host, server.server_address[1])
    # Rendered once per stand-in: the text changes only when members do.
    cfg.started = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    cfg.role_token = cfg.role_token or secrets.token_hex(16)
    cfg.role_yrn = "yrn:yahoo:::%s:role:%s" % (cfg.tenant, cfg.role)
    cfg.resource_yrn = "yrn:yahoo:::%s:resource:%s" % (cfg.tenant, cfg.role)
    cfg.slave_role = cfg.role + "/slave"
    cfg.slave_role_token = secrets.token_hex(16)
    cfg.slave_role_yrn = "yrn:yahoo:::%s:role:%s" % (cfg.tenant, cfg.slave_role)
    cfg.slave_resource_yrn = "yrn:yahoo:::%s:resource:%s" % (cfg.tenant, cfg.slave_role)
    Handler.cfg = cfg
    STORE.keystone_url = cfg.keystone_url
    STORE.premade(cfg, STATE["hosts"], STATE["slaves"])
    print(json.dumps({"url": cfg.url, "role_yrn": cfg.role_yrn, "resource_yrn": cfg.resource_yrn,
                      "role_token": cfg.role_token,
                      "extdata_url": "%s/v1/extdata/%s/%s" % (cfg.url, cfg.tenant, cfg.role),
                      "slave_role_yrn": cfg.slave_role_yrn, "slave_resource_yrn": cfg.slave_resource_yrn,
                      "slave_role_token": cfg.slave_role_token,
                      "slave_extdata_url": "%s/v1/extdata/%s/%s" % (cfg.url, cfg.tenant, cfg.slave_role)}),
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
