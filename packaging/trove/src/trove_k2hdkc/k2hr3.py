"""K2HR3 provisioning for one K2HDKC cluster (or lone instance), done with
the tenant's own Keystone token: no K2HR3 credential of Trove's.

What one cluster gets, in the tenant's K2HR3 tenant (the Keystone
project's name), for each side, ``server`` and ``slave``
(yahoojapan/k2hr3_api ``src/routes``):

- a resource ``<base>/<side>``: the shipped k2hdkc.ini template, with the
  values its keys name (``cluster-name``, ``chmpx-mode``, the ports);
- a policy ``<base>/<side>`` allowing that resource to be read;
- a role ``<base>/<side>`` with that policy, where the nodes of that side
  register, and a role token for it that never expires, whose EXTDATA URL
  the nodes are given.

The agent reads the resource named as its role (``:role:`` becomes
``:resource:``), and the template lists the hosts of both roles, so each
side's ini follows the other's members.

A provisioning that fails half way removes what it created and raises
:class:`K2hr3Error` naming the step; a removal removes what a
:class:`Record` lists, treating what is already gone as removed. No
token is ever part of an error, a record or a log line. Standard library
only: the plugin loads into every Trove process.
"""

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

SIDES = ("server", "slave")
READ = "yrn:yahoo::::action:read"
# One request's bound, so that a K2HR3 that does not answer fails the
# create or delete with its cause instead of holding trove-api's worker.
TIMEOUT = 10.0
# The EXTDATA sub-URI k2hr3-init is served under for Trove nodes (K2HR3's
# `extdata` configuration; K2HDKC DBaaS uses the same).
EXTDATA_URI = "trove"


class K2hr3Error(Exception):
    """A K2HR3 step failed: which, why, and what it left in K2HR3."""

    def __init__(self, step, cause, status=None, left=()):
        super().__init__(step, cause, status, tuple(left))
        self.step, self.cause, self.status, self.left = step, cause, status, tuple(left)

    def __str__(self):
        text = "K2HR3 %s: %s" % (self.step, self.cause)
        if self.status is not None:
            text += " (HTTP %d)" % self.status
        if self.left:
            text += "; left in K2HR3: %s" % ", ".join("%s %s" % o for o in self.left)
        return text


def keystone_v3(auth_url):
    """Keystone's v3 API root from an auth URL given with or without
    ``/v3`` (both are common in openrc files and trove.conf)."""
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


def yrn(tenant, kind, name):
    return "yrn:yahoo:::%s:%s:%s" % (tenant, kind, name)


class Api:
    """K2HR3's REST API at ``url`` (``https://k2hr3.example.com:18080``):
    one bounded request per call, TLS verified unless ``insecure``."""

    def __init__(self, url, timeout=TIMEOUT, cafile=None, insecure=False):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.context = None
        if self.url.startswith("https:"):
            self.context = ssl.create_default_context(cafile=cafile)
            if insecure:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE

    def call(self, step, method, path, token, body=None, query=None):
        """(status, JSON body or None). A status of 400 and above raises,
        except 404, which the caller judges."""
        url = self.url + urllib.parse.quote(path)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "x-auth-token": token, "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise K2hr3Error(step, "%s unreachable: %s" % (self.url, reason)) from None
        answer = None
        if raw:
            try:
                answer = json.loads(raw)
            except ValueError:
                raise K2hr3Error(step, "answered with no JSON", status) from None
        if status >= 400 and status != 404:
            message = answer.get("message") if isinstance(answer, dict) else None
            # Some of K2HR3's messages quote the token they refused.
            secret = token.split("=", 1)[-1]
            message = (message or "refused").replace(secret, "***") if secret else message
            raise K2hr3Error(step, message or "refused", status)
        return status, answer


class Record:
    """What a provisioning created in K2HR3, in order: enough to remove it
    later (no token). ``to_json``/``from_json`` keep it across processes:
    a delete that K2HR3 refused is finished by the next one."""

    def __init__(self, tenant, base, created=()):
        self.tenant, self.base = tenant, base
        self.created = [tuple(o) for o in created]

    def to_json(self):
        return json.dumps({"tenant": self.tenant, "base": self.base, "created": self.created})

    @classmethod
    def from_json(cls, text):
        obj = json.loads(text)
        return cls(obj["tenant"], obj["base"], obj["created"])


class Provisioned:
    """A provisioning's result: its record and the EXTDATA URL of each
    side (secret: each holds a role token's register path)."""

    def __init__(self, record, extdata_urls):
        self.record = record
        self.extdata_urls = extdata_urls

    def __repr__(self):
        return "Provisioned(%s, sides=%s)" % (self.record.base, sorted(self.extdata_urls))


def user_token(api, keystone_token, project):
    """A K2HR3 user token scoped to the project, for a Keystone token."""
    _, answer = api.call("user token for project %s" % project, "POST", "/v1/user/tokens",
                         "U=" + keystone_token, {"auth": {"tenantName": project}})
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token or not answer.get("scoped"):
        raise K2hr3Error("user token for project %s" % project, "no scoped token in the answer")
    return "U=" + token


def template_for(template, tenant, base):
    """The shipped template with its placeholders filled: the role
    references ``yrn:yahoo:::TENANT:role:CLUSTER/<side>``."""
    return template.replace(":TENANT:role:CLUSTER/", ":%s:role:%s/" % (tenant, base))


def provision(api, keystone_token, project, base, template, values):
    """Creates the cluster's objects under ``base`` in the project's K2HR3
    tenant; ``values`` holds ``cluster-name`` and the three chmpx ports.
    Returns a :class:`Provisioned`. On a failure, removes what it created
    and raises the step's :class:`K2hr3Error` (naming what it could not
    remove)."""
    record = Record(project, base)
    token = user_token(api, keystone_token, project)
    data = template_for(template, project, base)
    urls = {}
    try:
        for side in SIDES:
            name = "%s/%s" % (base, side)
            keys = dict(values, **{"chmpx-mode": side.upper()})
            create(api, token, record, "resource", {"name": name, "type": "string", "data": data,
                                                    "keys": keys, "alias": []})
            create(api, token, record, "policy", {"name": name, "effect": "allow", "action": [READ],
                                                  "resource": [yrn(project, "resource", name)],
                                                  "condition": None, "alias": []})
            create(api, token, record, "role", {"name": name, "policies": [yrn(project, "policy", name)],
                                                "alias": []})
            urls[side] = role_extdata_url(api, token, name)
    except K2hr3Error as failed:
        left = remove_with(api, token, record)
        raise K2hr3Error(failed.step, failed.cause, failed.status, left) from None
    return Provisioned(record, urls)


def created_objects(base):
    """What :func:`provision` makes under ``base``, in its order."""
    return [(kind, "%s/%s" % (base, side)) for side in SIDES for kind in ("resource", "policy", "role")]


def role_extdata_url(api, token, role):
    """A new role token of ``role`` that never expires, as the EXTDATA URL
    a node reads it from."""
    step = "role token of %s" % role
    status, answer = api.call(step, "GET", "/v1/role/token/" + role, token, query={"expire": "0"})
    path = answer.get("registerpath") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(path, str) or not path:
        raise K2hr3Error(step, "no register path in the answer", status)
    return "%s/v1/extdata/%s/%s" % (api.url, EXTDATA_URI, path)


def create(api, token, record, kind, body):
    step = "create %s %s" % (kind, body["name"])
    status, _ = api.call(step, "POST", "/v1/" + kind, token, {kind: body})
    if status != 201:
        raise K2hr3Error(step, "not created", status)
    record.created.append((kind, body["name"]))


def remove(api, keystone_token, record):
    """Removes what the record lists, last created first. Raises
    :class:`K2hr3Error` naming what is left; what is already gone counts
    as removed, so a second run finishes a first that failed."""
    token = user_token(api, keystone_token, record.tenant)
    left = remove_with(api, token, record)
    if left:
        raise K2hr3Error("removal of %s" % record.base, "not everything was removed", left=left)


def remove_with(api, token, record):
    """Removes what it can; returns what is left (and leaves it in the
    record). A role goes with its hosts and role tokens."""
    for kind, name in reversed(list(record.created)):
        try:
            api.call("remove %s %s" % (kind, name), "DELETE", "/v1/%s/%s" % (kind, name), token)
        except K2hr3Error:
            continue
        record.created.remove((kind, name))
    return list(record.created)
