#!/usr/bin/env python3
"""K2HR3 STAND-IN for tests: not K2HR3, a test double of the subset of its
REST API a K2HDKC node uses with a role token (yahoojapan/k2hr3 api_role,
api_resource, api_extdata), with state in memory.

  k2hr3_standin.py --listen 127.0.0.1:0 --tenant T --role NAME
                   [--role-token TOKEN] [--server-port 8020]
                   [--server-ctlport 8021] [--slave-ctlport 8031]
                   [--automerge on|off] [--threads N]

Prints one JSON line when ready: url, role_yrn, resource_yrn, role_token,
extdata_url, and the same for the cluster's slave role (slave_role_yrn,
slave_resource_yrn, slave_role_token, slave_extdata_url): the role
`<role>/slave` with a token of its own, where application hosts register
(K2HDKC DBaaS's `<cluster>/slave`).

K2HR3 side:
  GET    /v1/extdata/<tenant>/<role>   (User-Agent extdata_k2hr3_trove)
         -> k2hr3_api's k2hr3-init.sh.templ, expanded: K2HR3_ROLE_TOKEN,
            K2HR3_ROLE_NAME, K2HR3_ROLE_TENANT, K2HR3_API_HOST_URI,
            K2HR3_ERROR_MSG (only those lines here)
  PUT    /v1/role/<role yrn>?port=&cuk=&extra=&tag=   x-auth-token: R=<token>
         adds the caller's source address as a host of the role
  DELETE /v1/role/<role yrn>?port=&cuk=               removes it
  GET    /v1/role/<role yrn>                          hosts of the role
  GET    /v1/resource/<resource yrn>                  the k2hdkc.ini rendered
         from the role's current hosts, {"result": true, "resource": "..."}
  The same four for the slave role with its token; its resource is the
  template's SLAVE side: MODE = SLAVE, the slave control port, the
  servers, one [SLVNODE] per registered slave (CUSTOM_ID_SEED = its tag),
  no [K2HDKC].
Test controls (not K2HR3):
  POST /_standin/fault {"mode": "ok"|"down"|"error500"|"slow", "delay_s": N}
  POST /_standin/member {"ip": A, "port": N, "cuk": C, "tag": T}
         a host as if another node had registered from address A
  DELETE /_standin/member?cuk=C   removes it again
  POST /_standin/ports {"server_port": N, "server_ctlport": N, "slave_ctlport": N}
         the chmpx ports the resource renders (the template's keys an
         operator changes together with the configuration group)
  GET  /_standin/calls   recorded calls (method, path, query, source ip)
"""

import argparse
import json
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"hosts": [], "slaves": [], "calls": [], "mode": "ok", "delay": 5.0}
LOCK = threading.Lock()


def render_ini(cfg, hosts, slaves=None):
    """The k2hdkc.ini in the shape of the K2HR3 template the K2HDKC DBaaS
    system stores (buildutils/custom_k2hr3_resource.txt): GLOBAL with
    CHMPXIDTYPE = CUSTOM, one SVRNODE per registered server host whose
    CUSTOM_ID_SEED is the host's `tag` (the host name k2hr3-init sends), a
    SLVNODE entry for any slave, K2HDKC. SELFCUK stays a placeholder that
    the fetching node replaces with its own CUK. NAME is the registered
    address (the template uses the tag; an address needs no resolver).
    A member registered without a tag renders an empty seed, which chmpx
    refuses, as it would with the real template."""
    slave = slaves is not None
    out = [
        "#", "# k2hdkc.ini rendered by the K2HR3 stand-in", "#",
        "[GLOBAL]",
        "FILEVERSION            = 1",
        "DATE                   = %s" % cfg.started,
        "GROUP                  = %s" % cfg.role,
        "MODE                   = %s" % ("SLAVE" if slave else "SERVER"),
        "CHMPXIDTYPE            = CUSTOM",
        "DELIVERMODE            = hash",
        "MAXCHMPX               = 256",
        "REPLICA                = 1",
        "MAXMQSERVER            = 8",
        "MAXMQCLIENT            = 128",
        "MQPERATTACH            = 8",
        "MAXQPERSERVERMQ        = 128",
        "MAXQPERCLIENTMQ        = 128",
        "MAXMQPERCLIENT         = 16",
        "MAXHISTLOG             = 0",
    ] + ([
        "CTLPORT                = %d" % cfg.slave_ctlport,
        "SELFCTLPORT            = %d" % cfg.slave_ctlport,
    ] if slave else [
        "PORT                   = %d" % cfg.server_port,
        "CTLPORT                = %d" % cfg.server_ctlport,
        "SELFCTLPORT            = %d" % cfg.server_ctlport,
        "SELFCUK                = __SELF_INSTANCE_ID__",
    ]) + [
        "RWTIMEOUT              = 10000",
        "RETRYCNT               = 500",
        "CONTIMEOUT             = 1000",
        "MQRWTIMEOUT            = 5000",
        "MQRETRYCNT             = 1000",
        "MQACK                  = no",
        "AUTOMERGE              = %s" % cfg.automerge,
        "DOMERGE                = on",
        "MERGETIMEOUT           = 0",
        "SOCKTHREADCNT          = %d" % cfg.threads,
        "MQTHREADCNT            = %d" % cfg.threads,
        "MAXSOCKPOOL            = 16",
        "SOCKPOOLTIMEOUT        = 0",
        "SSL                    = no",
        "K2HFULLMAP             = on",
        "K2HMASKBIT             = 4",
        "K2HCMASKBIT            = 8",
        "K2HMAXELE              = 16",
        "",
    ]
    for h in hosts:
        if h["port"] == cfg.server_port:
            out += ["[SVRNODE]", "NAME                   = %s" % h["ip"], "CUK                    = %s" % h["cuk"],
                    "PORT                   = %d" % cfg.server_port, "CTLPORT                = %d" % cfg.server_ctlport,
                    "CUSTOM_ID_SEED         = %s" % h["tag"], "SSL                    = no", ""]
    if slave:
        for h in slaves or [{"ip": "127.0.0.1", "tag": "no-slave-yet"}]:
            out += ["[SLVNODE]", "NAME                   = %s" % h["ip"],
                    "CTLPORT                = %d" % cfg.slave_ctlport,
                    "CUSTOM_ID_SEED         = %s" % h["tag"], "SSL                    = no", ""]
        return "\n".join(out)
    # Slaves may connect from anywhere in the cluster's network.
    out += ["[SLVNODE]", "NAME                   = [.]*", "CTLPORT                = %d" % cfg.slave_ctlport, ""]
    out += ["[K2HDKC]", "RCVTIMEOUT             = 1000", "SVRNODEINI             = /etc/antpickax/k2hdkc.ini",
            "K2HTYPE                = file", "K2HFILE                = /var/lib/antpickax/k2hdkc/data/k2hdkc.k2h",
            "K2HFULLMAP             = on", "K2HINIT                = no", "K2HMASKBIT             = 4",
            "K2HCMASKBIT            = 8", "K2HMAXELE              = 16", "K2HPAGESIZE            = 128",
            "MAXTHREAD              = 20", ""]
    return "\n".join(out)


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
        mode = STATE["mode"]
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

    def roles(self):
        """(role name, role yrn, resource yrn, token, hosts key) of the
        cluster's server role and of its slave role."""
        c = self.cfg
        return [(c.role, c.role_yrn, c.resource_yrn, c.role_token, "hosts"),
                (c.slave_role, c.slave_role_yrn, c.slave_resource_yrn, c.slave_role_token, "slaves")]

    def authorized(self, token):
        return self.headers.get("x-auth-token", "") == "R=" + token

    def role_call(self, token, key, q):
        """PUT (add the caller), DELETE (remove it), GET (list) on a role."""
        if not self.authorized(token):
            return self.reply(401, {"result": False, "message": "role token is invalid"})
        if self.command == "GET":
            with LOCK:
                return self.reply(200, {"result": True, "role": {"hosts": {"ips": [
                    "%s %s %s %s" % (h["ip"], h["port"], h["cuk"], h["extra"]) for h in STATE[key]]}}})
        try:
            port = int(q.get("port", "0"))
        except ValueError:
            return self.reply(400, {"result": False, "message": "port is not a number"})
        ident = (self.client_address[0], port, q.get("cuk", ""))
        entry = {"ip": ident[0], "port": port, "cuk": ident[2], "extra": q.get("extra", ""), "tag": q.get("tag", "")}
        with LOCK:
            known = [i for i, h in enumerate(STATE[key]) if (h["ip"], h["port"], h["cuk"]) == ident]
            if self.command == "DELETE":
                STATE[key] = [h for h in STATE[key] if (h["ip"], h["port"], h["cuk"]) != ident]
            elif known:
                # Registering again keeps the host where it was.
                STATE[key][known[0]] = entry
            else:
                STATE[key].append(entry)
        if self.command == "DELETE":
            # K2HR3 answers a removal with 204 and no body.
            self.send_response(204)
            self.end_headers()
            return None
        return self.reply(201, {"result": True, "message": None})

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        self.record(url)
        if self.faulted(url):
            return
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        path = urllib.parse.unquote(url.path)
        if self.command == "POST" and path == "/_standin/fault":
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            STATE["mode"] = body.get("mode", "ok")
            STATE["delay"] = float(body.get("delay_s", 5))
            return self.reply(200, {"result": True})
        if self.command == "POST" and path == "/_standin/member":
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            entry = {"ip": body["ip"], "port": int(body["port"]), "cuk": body["cuk"], "extra": "openstack-auto-v1",
                     "tag": body.get("tag", "")}
            with LOCK:
                STATE["hosts"].append(entry)
            return self.reply(201, {"result": True})
        if self.command == "POST" and path == "/_standin/ports":
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with LOCK:
                for k in ("server_port", "server_ctlport", "slave_ctlport"):
                    if k in body:
                        setattr(self.cfg, k, int(body[k]))
            return self.reply(200, {"result": True})
        if self.command == "DELETE" and path == "/_standin/member":
            with LOCK:
                STATE["hosts"] = [h for h in STATE["hosts"] if h["cuk"] != q.get("cuk")]
            return self.reply(200, {"result": True})
        if self.command == "GET" and path == "/_standin/calls":
            with LOCK:
                return self.reply(200, {"result": True, "calls": STATE["calls"], "hosts": STATE["hosts"],
                                        "slaves": STATE["slaves"]})
        for name, yrn, resource_yrn, token, key in self.roles():
            if self.command == "GET" and path == "/v1/extdata/%s/%s" % (self.cfg.tenant, name):
                if self.headers.get("User-Agent") != "extdata_k2hr3_trove":
                    return self.reply(400, {"result": False, "message": "unknown user agent"})
                text = ("#!/bin/sh\n# (the rest of k2hr3-init.sh is left out of the stand-in)\n"
                        'K2HR3_ROLE_TOKEN="%s"\nK2HR3_ROLE_NAME="%s"\nK2HR3_ROLE_TENANT="%s"\n'
                        'K2HR3_API_HOST_URI="%s"\nK2HR3_ERROR_MSG="null"\n') % (token, yrn, self.cfg.tenant, self.cfg.url)
                return self.reply(200, text=text)
            if path == "/v1/role/" + yrn and self.command in ("PUT", "DELETE", "GET"):
                return self.role_call(token, key, q)
            if self.command == "GET" and path == "/v1/resource/" + resource_yrn:
                if not self.authorized(token):
                    return self.reply(401, {"result": False, "message": "role token is invalid"})
                with LOCK:
                    if key == "slaves":
                        text = render_ini(self.cfg, list(STATE["hosts"]), list(STATE["slaves"]))
                    else:
                        text = render_ini(self.cfg, list(STATE["hosts"]))
                return self.reply(200, {"result": True, "message": None, "resource": text})
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
