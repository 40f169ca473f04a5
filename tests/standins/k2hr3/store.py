"""What the K2HR3 stand-in holds, per tenant, as K2HR3's API shapes it
(yahoojapan/k2hr3_api src/routes/{userTokens,resource,policy,role}.ts):
scoped user tokens issued for a Keystone token, resources, policies,
roles with their hosts, role tokens and their register paths.

Every operation returns (HTTP status, JSON body or None) as the routes
answer; the handler only moves bytes. A refusal names its cause, as
K2HR3's `message` does, and never echoes a token.
"""

import json
import re
import secrets
import threading
import types
import urllib.error
import urllib.request

from render import render_ini

READ = "yrn:yahoo::::action:read"
WRITE = "yrn:yahoo::::action:write"
# A name K2HR3 takes: no ':' (the yrn's separator), no control characters.
NAME = re.compile(r"^[A-Za-z0-9._~/@-]{1,256}$")


def yrn(tenant, kind, name):
    return "yrn:yahoo:::%s:%s:%s" % (tenant, kind, name)


def refused(status, message):
    return status, {"result": False, "message": message}


class Role:
    """A role: its policies, its hosts (as registered with a role token)
    and its role tokens."""

    def __init__(self, tenant, name, policies, hosts=None):
        self.tenant, self.name = tenant, name
        self.yrn = yrn(tenant, "role", name)
        self.policies = list(policies)
        # The pre-made roles share their list with the handler's STATE.
        self.hosts = hosts if hosts is not None else []
        self.tokens = set()


class Store:
    def __init__(self, keystone_url=None):
        # Re-entrant: the handler holds it around a role's hosts and calls in.
        self.lock = threading.RLock()
        self.keystone_url = keystone_url
        self.user_tokens = {}  # scoped user token -> {"tenant", "user"}
        self.resources = {}  # yrn -> {"tenant", "name", "type", "data", "keys"} or a pre-made's render
        self.policies = {}  # yrn -> {"tenant", "name", "effect", "action", "resource"}
        self.roles = {}  # yrn -> Role
        self.role_tokens = {}  # role token -> role yrn
        self.register_paths = {}  # register path -> role token

    # --- the pre-made cluster (--role): what an operator made by hand ------
    def premade(self, cfg, hosts, slaves):
        """The server role `cfg.role` and its slave role, with resources
        rendered from cfg and register paths `<tenant>/<role>`."""
        for name, token, lst, slave in ((cfg.role, cfg.role_token, hosts, False),
                                        (cfg.slave_role, cfg.slave_role_token, slaves, True)):
            res = yrn(cfg.tenant, "resource", name)
            pol = yrn(cfg.tenant, "policy", name)
            self.resources[res] = {"tenant": cfg.tenant, "name": name, "premade": (cfg, slave)}
            self.policies[pol] = {"tenant": cfg.tenant, "name": name, "effect": "allow",
                                  "action": [READ], "resource": [res]}
            role = Role(cfg.tenant, name, [pol], lst)
            role.tokens.add(token)
            self.roles[role.yrn] = role
            self.role_tokens[token] = role.yrn
            self.register_paths["%s/%s" % (cfg.tenant, name)] = token

    # --- user tokens -------------------------------------------------------
    def keystone_identity(self, token):
        """(user name, project name) of a Keystone token, asked of Keystone
        itself (a token may validate itself), or None when Keystone refuses."""
        base = self.keystone_url.rstrip("/")
        base = base[:-3].rstrip("/") if base.endswith("/v3") else base
        req = urllib.request.Request(base + "/v3/auth/tokens",
                                     headers={"X-Auth-Token": token, "X-Subject-Token": token})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError:
            return None
        t = body.get("token", {})
        return t.get("user", {}).get("name"), (t.get("project") or {}).get("name")

    def issue_user_token(self, header, body):
        """POST /v1/user/tokens, `x-auth-token: U=<Keystone token>`, body
        {"auth": {"tenantName": T}}: a token scoped to T when the Keystone
        token is scoped to the project named T."""
        if not header.startswith("U="):
            return refused(400, "Some parameter(user name or unscoped token) is wrong.")
        if self.keystone_url is None:
            return refused(401, "could not get scoped user token: this stand-in checks tokens against no Keystone")
        auth = body.get("auth") if isinstance(body, dict) else None
        tenant = auth.get("tenantName") if isinstance(auth, dict) else None
        if not isinstance(tenant, str) or not tenant:
            return refused(400, "Some parameter(user name or unscoped token) is wrong.")
        who = self.keystone_identity(header[2:])
        if who is None:
            return refused(401, "could not get scoped user token for tenant=%s by Keystone refusing the token" % tenant)
        user, project = who
        if project != tenant:
            return refused(401, "could not get scoped user token for user=%s, tenant=%s" % (user, tenant))
        token = secrets.token_hex(32)
        with self.lock:
            self.user_tokens[token] = {"tenant": tenant, "user": user}
        return 201, {"result": True, "message": None, "scoped": True, "token": token}

    def user(self, header):
        """The tenant of a scoped user token (`U=...`), or None."""
        if not header.startswith("U="):
            return None
        with self.lock:
            t = self.user_tokens.get(header[2:])
        return t["tenant"] if t else None

    # --- resources, policies, roles: created and removed with a user token --
    def full(self, tenant, kind, name_or_yrn):
        """The yrn a path names: a name of the token's tenant, or a full yrn
        that must be of that tenant."""
        if name_or_yrn.startswith("yrn:"):
            return name_or_yrn if name_or_yrn.startswith(yrn(tenant, kind, "")) else None
        return yrn(tenant, kind, name_or_yrn) if NAME.match(name_or_yrn) else None

    def own_yrns(self, tenant, kind, values):
        """A list of full yrns of `kind` of this tenant, else None."""
        if not isinstance(values, list):
            return None
        prefix = yrn(tenant, kind, "")
        return values if all(isinstance(v, str) and v.startswith(prefix) for v in values) else None

    def post(self, tenant, kind, body):
        """POST /v1/resource | /v1/policy | /v1/role: creates or updates."""
        obj = body.get(kind) if isinstance(body, dict) else None
        if not isinstance(obj, dict):
            return refused(400, "POST body does not have %s data" % kind)
        name = obj.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            return refused(400, "%s name is empty or has a character K2HR3 does not take" % kind)
        key = yrn(tenant, kind, name)
        if kind == "resource":
            if obj.get("type") not in ("string", "object", None):
                return refused(400, "resource type must be string or object")
            keys = obj.get("keys")
            if keys is not None and not isinstance(keys, dict):
                return refused(400, "resource keys must be an object")
            with self.lock:
                self.resources[key] = {"tenant": tenant, "name": name, "type": obj.get("type"),
                                       "data": obj.get("data"), "keys": dict(keys or {})}
        elif kind == "policy":
            if obj.get("effect") not in ("allow", "deny"):
                return refused(400, "policy effect must be allow or deny")
            action = obj.get("action")
            if not isinstance(action, list) or not set(action) <= {READ, WRITE}:
                return refused(400, "policy action must be a list of %s and %s" % (READ, WRITE))
            res = self.own_yrns(tenant, "resource", obj.get("resource"))
            if res is None or obj.get("condition") is not None:
                return refused(400, "policy resource must list resource yrns of tenant %s; condition must be null" % tenant)
            with self.lock:
                self.policies[key] = {"tenant": tenant, "name": name, "effect": obj["effect"],
                                      "action": action, "resource": res}
        else:
            pols = self.own_yrns(tenant, "policy", obj.get("policies"))
            if pols is None:
                return refused(400, "role policies must list policy yrns of tenant %s" % tenant)
            with self.lock:
                if key in self.roles:
                    self.roles[key].policies = pols
                else:
                    self.roles[key] = Role(tenant, name, pols)
        return 201, {"result": True, "message": None}

    def delete(self, tenant, kind, name_or_yrn):
        """DELETE /v1/<kind>/<name or yrn>: gone, with a role's tokens and
        hosts. Removing what is not there succeeds, as removing K2HR3's
        keys does."""
        key = self.full(tenant, kind, name_or_yrn)
        if key is None:
            return refused(400, "DELETE request url has wrong yrn full path to %s" % kind)
        with self.lock:
            if kind == "role":
                role = self.roles.pop(key, None)
                for token in role.tokens if role else ():
                    self.forget_token(token)
            else:
                getattr(self, {"resource": "resources", "policy": "policies"}[kind]).pop(key, None)
        return 204, None

    def forget_token(self, token):
        self.role_tokens.pop(token, None)
        for path in [p for p, t in self.register_paths.items() if t == token]:
            del self.register_paths[path]

    # --- role tokens ---------------------------------------------------------
    def role_token(self, header, role, expire):
        """GET /v1/role/token/<role>?expire=N with a user token of the
        role's tenant: a new role token and its register path."""
        tenant = self.user(header)
        if tenant is None:
            return refused(401, "token is not a scoped user token of this K2HR3")
        if expire is not None and not expire.isdigit():
            return refused(400, "GET request has expire which is not number")
        key = self.full(tenant, "role", role)
        with self.lock:
            r = self.roles.get(key) if key else None
            if r is None:
                return refused(404, "Could not get role token.")
            token, path = secrets.token_hex(32), secrets.token_urlsafe(48)
            r.tokens.add(token)
            self.role_tokens[token] = r.yrn
            self.register_paths[path] = token
        return 200, {"result": True, "message": None, "token": token, "registerpath": path}

    def delete_role_token(self, header, token):
        """DELETE /v1/role/token/<role token> with a user token."""
        tenant = self.user(header)
        if tenant is None:
            return refused(401, "token is not a scoped user token of this K2HR3")
        with self.lock:
            role = self.roles.get(self.role_tokens.get(token, ""))
            if role is None or role.tenant != tenant:
                return refused(404, "no such role token in tenant %s" % tenant)
            role.tokens.discard(token)
            self.forget_token(token)
        return 204, None

    # --- what a node does with a role token ------------------------------
    def by_register_path(self, path):
        """(role, role token) an EXTDATA path names, or None."""
        with self.lock:
            token = self.register_paths.get(path)
            role = self.roles.get(self.role_tokens.get(token, ""))
        return (role, token) if role else None

    def role_of(self, header):
        """The role a `R=<role token>` header is a token of, or None."""
        if not header.startswith("R="):
            return None
        with self.lock:
            return self.roles.get(self.role_tokens.get(header[2:], ""))

    def readable(self, role, resource_yrn):
        """Whether one of the role's policies allows reading the resource."""
        with self.lock:
            for p in role.policies:
                pol = self.policies.get(p)
                if pol and pol["effect"] == "allow" and READ in pol["action"] and resource_yrn in pol["resource"]:
                    return True
        return False

    def render(self, resource_yrn, cfg):
        """The k2hdkc.ini a resource renders, or None when there is none."""
        with self.lock:
            res = self.resources.get(resource_yrn)
            if res is None:
                return None
            if "premade" in res:
                cfg, slave = res["premade"]
                server = self.roles[yrn(cfg.tenant, "role", cfg.role)].hosts
                slaves = self.roles[yrn(cfg.tenant, "role", cfg.slave_role)].hosts if slave else None
                return render_ini(cfg, list(server), list(slaves) if slave else None)
            return self.render_provisioned(res, cfg)

    def render_provisioned(self, res, cfg):
        """A resource the plugin loaded: the shipped template, whose server
        and slave hosts come from the roles it names
        (`%yrn:...:role:X/server/hosts/ip%`), its values from the keys.
        The stand-in does not run K2HR3's template engine; test_template
        keeps the two in step."""
        data, keys = res.get("data") or "", res["keys"]
        named = set(re.findall(r"%(yrn:yahoo:::[^%:]*:role:[^%]*?)/hosts/ip%", data))
        server = [r for r in named if r.endswith("/server")]
        slave = [r for r in named if r.endswith("/slave")]
        try:
            ports = {k: int(keys[k]) for k in ("chmpx-server-port", "chmpx-server-ctlport", "chmpx-slave-ctlport")}
        except (KeyError, ValueError):
            ports = None
        automerge = re.search(r"^AUTOMERGE\s*=\s*(\S+)", data, re.M)
        if len(server) != 1 or len(slave) != 1 or ports is None or keys.get("chmpx-mode") not in ("SERVER", "SLAVE"):
            # The real template renders nonsense here; say what is missing.
            return "# the stand-in cannot render this resource: it needs the template's role references and the keys chmpx-mode, chmpx-server-port, chmpx-server-ctlport, chmpx-slave-ctlport\n"
        view = types.SimpleNamespace(
            started=cfg.started, role=keys.get("cluster-name", ""), threads=cfg.threads,
            automerge=automerge.group(1) if automerge else "off", server_port=ports["chmpx-server-port"],
            server_ctlport=ports["chmpx-server-ctlport"], slave_ctlport=ports["chmpx-slave-ctlport"])
        hosts = list(self.roles[server[0]].hosts) if server[0] in self.roles else []
        slaves = list(self.roles[slave[0]].hosts) if slave[0] in self.roles else []
        return render_ini(view, hosts, slaves if keys["chmpx-mode"] == "SLAVE" else None)

    def state(self):
        """Every tenant's objects (test control, not K2HR3)."""
        with self.lock:
            return {"resources": sorted(self.resources), "policies": sorted(self.policies),
                    "roles": {y: {"hosts": len(r.hosts), "tokens": len(r.tokens), "policies": r.policies}
                              for y, r in sorted(self.roles.items())},
                    "register_paths": len(self.register_paths)}
