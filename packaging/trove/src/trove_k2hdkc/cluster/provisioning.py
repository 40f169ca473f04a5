"""K2HR3 objects a cluster (or a lone instance, :mod:`trove_k2hdkc.instance`)
gets without an operator.

When ``[k2hdkc] k2hr3_provision_url`` is set, a cluster created with a
configuration group that names a cluster (``cluster-name``) but no
``extdata-url`` gets its K2HR3 objects made here, with the caller's own
Keystone token, before any member is created (:mod:`trove_k2hdkc.k2hr3`
says which). The members receive the server role's EXTDATA URL in
``cluster_config`` (never in the group, which the tenant reads); a grow
asks K2HR3 for another token of the same role. The slave role's EXTDATA
URL, which application hosts need, is kept in the plugin's table
``k2hdkc_k2hr3`` in Trove's database and shown with the cluster. Its
``cluster_id`` column holds the cluster's ID, or the lone instance's.

Deleting the cluster removes the objects with the deleting tenant's
token. When K2HR3 cannot do it, the row stays marked
``removal_pending``: the tenant's next cluster delete, or
``python -m trove_k2hdkc k2hr3-cleanup`` run with the tenant's
credentials, finishes it.
"""

import json
import os
import urllib.error
import urllib.request

import sqlalchemy as sa
import webob.exc
from oslo_log import log as logging

from trove.common import cfg
from trove.common import exception
from trove.common import timeutils
from trove.common import utils
from trove.configuration import models as config_models
from trove.db.sqlalchemy import session as db_session

from trove_k2hdkc import CHMPX_PORTS
from trove_k2hdkc import MANAGER
from trove_k2hdkc import TEMPLATES_DIR
from trove_k2hdkc import k2hr3

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

TEMPLATE = os.path.join(TEMPLATES_DIR, "k2hr3", "k2hdkc-resource.k2hr3template")

_META = sa.MetaData()
TABLE = sa.Table(
    "k2hdkc_k2hr3", _META,
    sa.Column("cluster_id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("k2hr3_tenant", sa.String(255), nullable=False),
    sa.Column("base", sa.String(255), nullable=False),
    # Secret: the slave role token's register path. Shown to the tenant
    # who owns the cluster, as application hosts need it.
    sa.Column("slave_extdata_url", sa.Text, nullable=True),
    sa.Column("removal_pending", sa.Boolean, nullable=False, default=False),
    sa.Column("updated", sa.DateTime, nullable=False))
_CREATED = []


def enabled():
    return bool(CONF.get(MANAGER).k2hr3_provision_url)


def base_name(cluster_id):
    """The objects' common name: the Trove cluster's ID, unique in every
    K2HR3 tenant, so two clusters of one name never share a role."""
    return "trove-k2hdkc-%s" % cluster_id


def _api():
    conf = CONF.get(MANAGER)
    return k2hr3.Api(conf.k2hr3_provision_url, cafile=conf.k2hr3_provision_ca_file or None)


def _engine():
    engine = db_session.get_engine()
    if not _CREATED:
        _META.create_all(engine, checkfirst=True)
        _CREATED.append(True)
    return engine


def _refused(error):
    """The HTTP error trove-api answers for a K2HR3 failure: 400 for a
    refusal, 503 when K2HR3 could not be asked."""
    if error.status is not None and 400 <= error.status < 500:
        return exception.BadRequest(str(error))
    return webob.exc.HTTPServiceUnavailable(explanation=str(error))


def project_name(context):
    """The caller's project name (the K2HR3 tenant), from Keystone itself:
    trove-api's context carries only the project's ID."""
    url = k2hr3.keystone_v3(CONF.service_credentials.auth_url)
    req = urllib.request.Request(url + "/auth/tokens", headers={
        "X-Auth-Token": context.auth_token, "X-Subject-Token": context.auth_token})
    try:
        with urllib.request.urlopen(req, timeout=k2hr3.TIMEOUT) as r:
            body = json.load(r)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise webob.exc.HTTPServiceUnavailable(
            explanation="K2HR3 provisioning: the project's name from Keystone (%s): %s" % (url, e))
    project = (body.get("token") or {}).get("project") or {}
    if project.get("id") != context.project_id or not project.get("name"):
        raise exception.BadRequest("K2HR3 provisioning: the token is not scoped to project %s"
                                   % context.project_id)
    return project["name"]


def group_values(context, configuration_id, datastore_version):
    """The caller's configuration group of this datastore version: its ID
    and its values (keys lower-case). NotFound (404) or
    ConfigurationDatastoreNotMatchInstance (400) otherwise."""
    configuration_id = utils.get_id_from_href(configuration_id)
    config_models.Configuration.find(context, configuration_id, datastore_version.id)
    items = config_models.DBConfigurationParameter.find_all(
        configuration_id=configuration_id, deleted=False).all()
    return configuration_id, {str(i.configuration_key).lower(): i.configuration_value for i in items}


def wants_provisioning(values):
    """Whether a group's values ask the plugin for K2HR3 objects: it names
    a cluster and no K2HR3 role of its own, and provisioning is on."""
    return enabled() and bool(values.get("cluster-name")) and not values.get("extdata-url")


def rekey(old_id, new_id):
    """The row made under ``old_id`` now belongs to ``new_id`` (a lone
    instance's objects are made before Trove gives it an ID)."""
    with _engine().begin() as db:
        db.execute(TABLE.update().where(TABLE.c.cluster_id == old_id).values(
            cluster_id=new_id, updated=timeutils.utcnow()))


def resource_values(values):
    """The template's keys from the configuration group's values."""
    ports = dict(zip(("chmpx-server-port", "chmpx-server-ctlport", "chmpx-slave-ctlport"),
                     (str(p) for p in CHMPX_PORTS)))
    for key in ports:
        if values.get(key):
            ports[key] = str(values[key])
    return dict(ports, **{"cluster-name": str(values["cluster-name"])})


def provision(context, cluster_id, values):
    """The cluster's objects, made with the caller's token; returns the
    server role's EXTDATA URL. Raises a 400 or 503 naming K2HR3 and the
    step after removing what it made; what K2HR3 (gone down half way)
    kept is recorded as pending, for the tenant's next delete or
    ``k2hr3-cleanup``."""
    tenant = project_name(context)
    with open(TEMPLATE) as f:
        template = f.read()
    try:
        done = k2hr3.provision(_api(), context.auth_token, tenant, base_name(cluster_id),
                               template, resource_values(values))
    except k2hr3.K2hr3Error as e:
        LOG.error("k2hdkc cluster %s: K2HR3 provisioning failed: %s", cluster_id, e)
        if e.left:
            with _engine().begin() as db:
                db.execute(TABLE.insert().values(
                    cluster_id=cluster_id, project_id=context.project_id, k2hr3_tenant=tenant,
                    base=base_name(cluster_id), slave_extdata_url=None,
                    removal_pending=True, updated=timeutils.utcnow()))
        raise _refused(e)
    try:
        with _engine().begin() as db:
            db.execute(TABLE.insert().values(
                cluster_id=cluster_id, project_id=context.project_id, k2hr3_tenant=tenant,
                base=done.record.base, slave_extdata_url=done.extdata_urls["slave"],
                removal_pending=False, updated=timeutils.utcnow()))
    except Exception:
        # Unrecorded objects would never be removed: take them back now.
        try:
            k2hr3.remove(_api(), context.auth_token, done.record)
        except k2hr3.K2hr3Error as e:
            LOG.error("k2hdkc cluster %s: K2HR3 objects %s left unrecorded: %s",
                      cluster_id, done.record.base, e)
        raise
    LOG.info("k2hdkc cluster %s: K2HR3 objects %s/{server,slave} made in tenant %s",
             cluster_id, done.record.base, tenant)
    return done.extdata_urls["server"]


def row(cluster_id):
    with _engine().begin() as db:
        return db.execute(TABLE.select().where(TABLE.c.cluster_id == cluster_id)).first()


def server_extdata_url(context, cluster_id):
    """Another EXTDATA URL of the cluster's server role (for a grow's new
    members), or None when the cluster's objects were not made here."""
    found = row(cluster_id) if enabled() else None
    if found is None:
        return None
    api = _api()
    try:
        token = k2hr3.user_token(api, context.auth_token, found.k2hr3_tenant)
        return k2hr3.role_extdata_url(api, token, "%s/server" % found.base)
    except k2hr3.K2hr3Error as e:
        raise _refused(e)


def slave_extdata_url(cluster_id):
    found = row(cluster_id) if enabled() else None
    return found.slave_extdata_url if found is not None else None


def remove(context, cluster_id):
    """After the members left: the cluster's objects removed. A K2HR3 that
    cannot remove them leaves the row marked ``removal_pending`` (logged);
    the delete goes on. Pending removals of the same project are retried
    here too."""
    if not enabled():
        return
    found = row(cluster_id)
    if found is not None:
        with _engine().begin() as db:
            db.execute(TABLE.update().where(TABLE.c.cluster_id == cluster_id).values(
                removal_pending=True, updated=timeutils.utcnow()))
    finish_pending(context)


def finish_pending(context):
    """Removes the objects of every deleted cluster of the caller's project
    whose removal is pending. Returns the cluster IDs still pending."""
    with _engine().begin() as db:
        pending = db.execute(TABLE.select().where(sa.and_(
            TABLE.c.project_id == context.project_id, TABLE.c.removal_pending.is_(True)))).fetchall()
    left = []
    for p in pending:
        record = k2hr3.Record(p.k2hr3_tenant, p.base, k2hr3.created_objects(p.base))
        try:
            k2hr3.remove(_api(), context.auth_token, record)
        except k2hr3.K2hr3Error as e:
            LOG.warning("k2hdkc cluster %s: K2HR3 objects not removed, kept for the next delete or "
                        "'python -m trove_k2hdkc k2hr3-cleanup': %s", p.cluster_id, e)
            left.append(p.cluster_id)
            continue
        with _engine().begin() as db:
            db.execute(TABLE.delete().where(TABLE.c.cluster_id == p.cluster_id))
        LOG.info("k2hdkc cluster %s: K2HR3 objects %s removed", p.cluster_id, p.base)
    return left
