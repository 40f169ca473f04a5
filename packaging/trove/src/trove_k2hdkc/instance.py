"""Lone k2hdkc instances whose K2HR3 objects the plugin provisions.

A cluster gets its K2HR3 objects through the cluster strategy
(:mod:`trove_k2hdkc.cluster.provisioning`). Trove 26 has no such hook for
a lone instance's create, show or delete, so :mod:`trove_k2hdkc.hook`
wraps three Trove functions; each does exactly what it did before unless
the instance is a k2hdkc one whose configuration group names a cluster
but no ``extdata-url`` and ``[k2hdkc] k2hr3_provision_url`` is set:

- ``trove.instance.models.Instance.create`` (trove-api): the objects are
  made with the caller's token before the instance, as for a cluster; the
  guest receives the server role's EXTDATA URL in ``cluster_config``
  (only ``extdata_url``, no ``id``: the agent prepares it as a lone
  node). A create that fails removes them again.
- ``trove.instance.views.InstanceDetailView.data`` (trove-api):
  ``openstack database instance show`` gives the owner the slave role's
  URL (``k2hdkc_slave_extdata_url``), which application hosts need.
- ``trove.taskmanager.manager.Manager.delete_instance``: once Trove has
  deleted the instance, its objects are removed with the deleting
  tenant's token, or left pending as a cluster's are
  (``python -m trove_k2hdkc k2hr3-cleanup``).
"""

import functools
import inspect
import logging
import uuid

from trove_k2hdkc import MANAGER

LOG = logging.getLogger("trove_k2hdkc")

#: Set on each wrapper, so that a second hook run wraps nothing twice.
MARK = "_trove_k2hdkc_lone"


def _provisioning():
    # Only when called: the module needs Trove's database layer, which
    # is not loaded yet when the hook wraps trove.instance.models.
    from trove_k2hdkc.cluster import provisioning

    return provisioning


def _group_to_provision(args):
    """The group's values when this create is a lone k2hdkc instance that
    asks for K2HR3 objects, else None."""
    version = args.get("datastore_version")
    if getattr(version, "manager", None) != MANAGER:
        return None
    if args.get("cluster_config") or args.get("slave_of_id") or not args.get("configuration_id"):
        return None
    provisioning = _provisioning()
    if not provisioning.enabled():
        return None
    # The caller's group of this version (404/400 otherwise), read
    # before Trove does: another tenant's values must never reach K2HR3.
    _, values = provisioning.group_values(args["context"], args["configuration_id"], version)
    return values if provisioning.wants_provisioning(values) else None


def wrap_create(create):
    """``Instance.create`` (the plain function under the classmethod)."""
    if getattr(create, MARK, False):
        return create
    signature = inspect.signature(create)

    @functools.wraps(create)
    def k2hdkc_create(cls, *args, **kwargs):
        bound = signature.bind(cls, *args, **kwargs)
        values = _group_to_provision(bound.arguments)
        if values is None:
            return create(cls, *args, **kwargs)
        provisioning = _provisioning()
        context = bound.arguments["context"]
        # The instance's ID comes from Trove inside create: the objects
        # are named and recorded under a new ID, moved to it after.
        key = str(uuid.uuid4())
        url = provisioning.provision(context, key, values)
        bound.arguments["cluster_config"] = {"extdata_url": url}
        try:
            instance = create(*bound.args, **bound.kwargs)
        except Exception:
            provisioning.remove(context, key)
            raise
        try:
            provisioning.rekey(key, instance.id)
        except Exception:
            # The instance exists and has its URL: failing its create now
            # would help no one. Its delete will not find the objects.
            LOG.exception("k2hdkc instance %s: its K2HR3 objects stay recorded under %s (table "
                          "k2hdkc_k2hr3), not under the instance, so its delete will not remove them",
                          instance.id, key)
            return instance
        LOG.info("k2hdkc instance %s: K2HR3 objects %s", instance.id, provisioning.base_name(key))
        return instance

    setattr(k2hdkc_create, MARK, True)
    return k2hdkc_create


def wrap_detail_data(data):
    """``InstanceDetailView.data``."""
    if getattr(data, MARK, False):
        return data

    @functools.wraps(data)
    def k2hdkc_data(self, *args, **kwargs):
        result = data(self, *args, **kwargs)
        instance = getattr(self, "instance", None)
        version = getattr(instance, "datastore_version", None)
        if getattr(version, "manager", None) == MANAGER:
            url = _provisioning().slave_extdata_url(instance.id)
            if url:
                result["instance"]["k2hdkc_slave_extdata_url"] = url
        return result

    setattr(k2hdkc_data, MARK, True)
    return k2hdkc_data


def _deleted(instance_id):
    from trove.common import exception
    from trove.instance import models as inst_models

    try:
        return bool(inst_models.DBInstance.find_by(id=instance_id).deleted)
    except exception.ModelNotFoundError:  # no row is as good as deleted
        return True


def wrap_delete(delete_instance):
    """The task manager's ``Manager.delete_instance``."""
    if getattr(delete_instance, MARK, False):
        return delete_instance

    @functools.wraps(delete_instance)
    def k2hdkc_delete_instance(self, context, instance_id, *args, **kwargs):
        result = delete_instance(self, context, instance_id, *args, **kwargs)
        provisioning = _provisioning()
        if provisioning.enabled() and provisioning.row(instance_id) is not None and _deleted(instance_id):
            provisioning.remove(context, instance_id)
        return result

    setattr(k2hdkc_delete_instance, MARK, True)
    return k2hdkc_delete_instance
