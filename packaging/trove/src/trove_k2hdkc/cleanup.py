"""``python -m trove_k2hdkc k2hr3-cleanup``: K2HR3 objects of deleted
clusters (or lone instances; the ID listed is theirs) whose removal K2HR3
could not do at the time.

    python -m trove_k2hdkc k2hr3-cleanup --config-file /etc/trove/trove.conf --list
        every pending removal in Trove's database, of every project
        (the operator's view; no credentials needed)
    python -m trove_k2hdkc k2hr3-cleanup --config-file /etc/trove/trove.conf
        removes the pending objects of one project, with that project's
        own credentials from the environment (the tenant's openrc:
        OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME or
        OS_PROJECT_ID, OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME), as
        the delete would have: Trove holds no K2HR3 credential

Exit status: 0 nothing left pending (of that project), 1 some left
(named, with K2HR3's answer in trove's log lines printed), 2 usage or
set-up error.
"""

import json
import os
import sys
import types
import urllib.error
import urllib.request

from trove_k2hdkc import k2hr3

TIMEOUT = 30


class SetupError(Exception):
    pass


def keystone_token(env):
    """A project-scoped token for the environment's credentials: (token,
    project ID). Password authentication, as the openstack CLI does."""
    missing = [k for k in ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD") if not env.get(k)]
    if not (env.get("OS_PROJECT_NAME") or env.get("OS_PROJECT_ID")):
        missing.append("OS_PROJECT_NAME or OS_PROJECT_ID")
    if missing:
        raise SetupError("the tenant's credentials are not in the environment (source its openrc): "
                         "missing %s" % ", ".join(missing))
    url = k2hr3.keystone_v3(env["OS_AUTH_URL"])
    if env.get("OS_PROJECT_ID"):
        project = {"id": env["OS_PROJECT_ID"]}
    else:
        project = {"name": env["OS_PROJECT_NAME"],
                   "domain": {"name": env.get("OS_PROJECT_DOMAIN_NAME") or "Default"}}
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": env["OS_USERNAME"], "password": env["OS_PASSWORD"],
            "domain": {"name": env.get("OS_USER_DOMAIN_NAME") or "Default"}}}},
        "scope": {"project": project}}}
    req = urllib.request.Request(url + "/auth/tokens", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            token = r.headers.get("X-Subject-Token")
            scoped = (json.load(r).get("token") or {}).get("project") or {}
    except urllib.error.HTTPError as e:
        raise SetupError("Keystone (%s) refused the credentials of %s: HTTP %d"
                         % (url, env["OS_USERNAME"], e.code))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SetupError("Keystone (%s) could not be asked: %s" % (url, e))
    if not token or not scoped.get("id"):
        raise SetupError("Keystone (%s) gave no project-scoped token" % url)
    return token, scoped["id"]


def _setup(config_args):
    """Trove's configuration and database, as trove-manage sets them up."""
    import trove_k2hdkc  # noqa: F401  the [k2hdkc] options, through the hook
    from trove.common import cfg
    from trove.db import get_db_api

    cfg.parse_args(["trove-k2hdkc"] + config_args)
    get_db_api().configure_db()


def pending_rows():
    from trove_k2hdkc.cluster import provisioning
    table = provisioning.TABLE
    with provisioning._engine().begin() as db:
        return db.execute(table.select().where(table.c.removal_pending.is_(True))
                          .order_by(table.c.updated)).fetchall()


def main(argv, env=None, out=sys.stdout, err=sys.stderr):
    env = os.environ if env is None else env
    listing = "--list" in argv
    config_args = [a for a in argv if a != "--list"]
    if "--config-file" not in config_args and "--config-dir" not in config_args:
        print(__doc__.strip(), file=err)
        return 2
    try:
        _setup(config_args)
        from trove_k2hdkc.cluster import provisioning
        if listing:
            rows = pending_rows()
            for r in rows:
                print("%s  project %s  K2HR3 tenant %s  objects %s/{server,slave}  pending since %s"
                      % (r.cluster_id, r.project_id, r.k2hr3_tenant, r.base, r.updated), file=out)
            print("%d cluster(s) with K2HR3 objects left to remove" % len(rows), file=out)
            return 0
        if not provisioning.enabled():
            raise SetupError("[k2hdkc] k2hr3_provision_url is not set in this configuration: "
                             "nothing here provisions K2HR3 objects")
        token, project_id = keystone_token(env)
    except SetupError as e:
        print("k2hr3-cleanup: %s" % e, file=err)
        return 2
    before = {r.cluster_id for r in pending_rows() if r.project_id == project_id}
    context = types.SimpleNamespace(auth_token=token, project_id=project_id)
    left = provisioning.finish_pending(context)
    for cluster_id in sorted(before - set(left)):
        print("%s: K2HR3 objects removed" % cluster_id, file=out)
    for cluster_id in left:
        print("%s: still pending (K2HR3's answer is in the log above)" % cluster_id, file=err)
    print("project %s: %d removed, %d still pending" % (project_id, len(before) - len(left), len(left)),
          file=out)
    return 1 if left else 0
