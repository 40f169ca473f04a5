"""trove-api side of k2hdkc clusters (``[k2hdkc] api_strategy``).

A k2hdkc cluster is one K2HDKC ring. Every member is a plain k2hdkc
server node of the same flavor and volume size. All members have the
cluster's configuration group, whose ``extdata-url`` names the K2HR3 role
they all join. The checks are made here, before anything is created. The
ring work is cast to the task manager (:mod:`.taskmanager`):

- ``create``: the members, then ``create_cluster``;
- ``grow``: the new members, then ``grow_cluster``;
- ``shrink``: only ``shrink_cluster``. The task manager deletes the
  leaving members itself, once the ring has handed their keys over;
- ``restart``: a rolling restart (``restart_cluster``).
- ``upgrade``: a rolling upgrade (``upgrade_cluster``).

Upgrade and configuration attach/detach are refused with a 400 that names
k2hdkc. Delete and reset-status are Trove's own.
"""

import re

from oslo_log import log as logging

from trove.cluster import models as cluster_models
from trove.cluster.tasks import ClusterTasks
from trove.cluster.views import ClusterView
from trove.common import cfg
from trove.common import clients
from trove.common import exception
from trove.common import server_group as srv_grp
from trove.common.strategies.cluster import base
from trove.common import timeutils
from trove.extensions.mgmt.clusters.views import MgmtClusterView
from trove.instance import models as inst_models
from trove.quota.quota import check_quotas
from trove.taskmanager import api as task_api

from trove_k2hdkc import MIN_CLUSTER_MEMBERS
from trove_k2hdkc.cluster import provisioning

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

#: The only member type of a k2hdkc cluster (``instances.type``).
MEMBER = "member"

#: The 400 of a create without a configuration group.
NEEDS_CONFIGURATION = ("k2hdkc clusters need a configuration group with the "
                       "K2HR3 values (extdata-url, cluster-name): create one "
                       "for the k2hdkc datastore version and give its ID "
                       "(openstack database cluster create ... "
                       "--configuration <ID>).")


def min_members(manager):
    """The fewest members a cluster may have, at create and after a shrink:
    ``min_cluster_member_count``, and never fewer than two, because K2HDKC
    keeps each key on two servers (``REPLICA = 1``)."""
    return max(MIN_CLUSTER_MEMBERS, CONF.get(manager).min_cluster_member_count)


def check_configuration(context, configuration_id, datastore_version):
    """The group exists, is the caller's, is of this datastore version and
    names the K2HR3 role (``extdata-url``), or, where the plugin provisions
    K2HR3 (:mod:`.provisioning`), names a cluster (``cluster-name``).
    Returns its ID and its values."""
    if not configuration_id:
        raise exception.BadRequest(NEEDS_CONFIGURATION)
    # NotFound (404) or ConfigurationDatastoreNotMatchInstance (400).
    configuration_id, values = provisioning.group_values(
        context, configuration_id, datastore_version)
    if not values.get("extdata-url"):
        if provisioning.wants_provisioning(values):
            return configuration_id, values
        raise exception.BadRequest(
            "Configuration group %s sets no extdata-url%s. %s"
            % (configuration_id,
               " and no cluster-name for K2HR3 to provision"
               if provisioning.enabled() else "", NEEDS_CONFIGURATION))
    return configuration_id, values


def check_member_types(instances):
    for instance in instances:
        types = instance.get("instance_type") or [MEMBER]
        if isinstance(types, str):
            types = [types]
        if set(types) != {MEMBER}:
            raise exception.BadRequest(
                "k2hdkc cluster nodes are all of type %r, not %s."
                % (MEMBER, ",".join(types)))


def validate_members(context, instances, manager, flavor_id=None,
                     volume_size=None):
    """Trove's own checks of cluster nodes, in the order of the cheap ones
    first: a volume each when the datastore uses volumes, one flavor and one
    volume size for all (``flavor_id`` and ``volume_size`` when the cluster
    has them already), the flavors exist, one network, quota."""
    ds_conf = CONF.get(manager)
    check_member_types(instances)
    volumes = cluster_models.get_required_volume_size(
        instances, ds_conf.volume_support)
    cluster_models.assert_homogeneous_cluster(
        instances, required_flavor=flavor_id, required_volume_size=volume_size)
    cluster_models.validate_instance_flavors(
        context, instances, ds_conf.volume_support, ds_conf.device_path)
    cluster_models.validate_instance_nics(context, instances)
    deltas = {"instances": len(instances)}
    if volumes is not None:
        deltas["volumes"] = volumes
    check_quotas(context.project_id, deltas)


def next_member_number(cluster_name, names):
    """The ``n`` of the next ``<cluster>-member-<n>``."""
    pattern = re.compile(r"^%s-member-(\d+)$" % re.escape(cluster_name))
    numbers = [int(m.group(1)) for m in map(pattern.match, names) if m]
    return max(numbers + [len(names)]) + 1


class K2hdkcAPIStrategy(base.BaseAPIStrategy):

    @property
    def cluster_class(self):
        return K2hdkcCluster

    @property
    def cluster_view_class(self):
        return K2hdkcClusterView

    @property
    def mgmt_cluster_view_class(self):
        return K2hdkcMgmtClusterView


class K2hdkcCluster(cluster_models.Cluster):

    @staticmethod
    def _create_members(context, db_info, datastore, datastore_version,
                        instances, locality, configuration_id, image_id,
                        first_number, member_count, extdata_url=None):
        """One Trove instance per node, each a ``member`` of the cluster
        with the cluster's configuration group. ``member_count`` is the
        size of the ring the members join: their agents start chmpx once
        K2HR3 lists that many servers (chmpx started on a partial ini was
        refused by its peers and saw one of them DOWN for good on the real
        image). ``extdata_url``: the server role's EXTDATA URL when the
        plugin provisioned the cluster's K2HR3 objects."""
        image = image_id or datastore_version.image_id
        cluster_config = {"id": db_info.id, "instance_type": MEMBER,
                          "member_count": member_count}
        if extdata_url:
            cluster_config["extdata_url"] = extdata_url
        created = []
        number = first_number
        for instance in instances:
            name = instance.get("name")
            if not name:
                name = "%s-member-%d" % (db_info.name, number)
                number += 1
            created.append(inst_models.Instance.create(
                context, name, instance["flavor_id"], image, [], [],
                datastore, datastore_version,
                instance.get("volume_size"), None,
                availability_zone=instance.get("availability_zone"),
                nics=instance.get("nics"),
                configuration_id=configuration_id,
                cluster_config=dict(cluster_config),
                volume_type=instance.get("volume_type"),
                modules=instance.get("modules"),
                locality=locality,
                region_name=instance.get("region_name")))
        return created

    @classmethod
    def create(cls, context, name, datastore, datastore_version,
               instances, extended_properties, locality, configuration,
               image_id=None):
        manager = datastore_version.manager
        LOG.info("Creating k2hdkc cluster %s with %d members.",
                 name, len(instances))
        needed = min_members(manager)
        if len(instances) < needed:
            raise exception.BadRequest(
                "A k2hdkc cluster needs at least %d members (K2HDKC keeps "
                "every key on two servers, REPLICA = 1; [%s] "
                "min_cluster_member_count = %d); %d given."
                % (needed, manager, CONF.get(manager).min_cluster_member_count,
                   len(instances)))
        if extended_properties:
            raise exception.BadRequest(
                "k2hdkc clusters take no extended properties (given: %s)."
                % ", ".join(sorted(extended_properties)))
        configuration, values = check_configuration(
            context, configuration, datastore_version)
        validate_members(context, instances, manager)

        db_info = cluster_models.DBCluster.create(
            name=name, tenant_id=context.project_id,
            datastore_version_id=datastore_version.id,
            task_status=ClusterTasks.BUILDING_INITIAL,
            configuration_id=configuration)
        extdata_url = None
        try:
            if not values.get("extdata-url"):
                # Before any member: they register in these roles.
                extdata_url = provisioning.provision(context, db_info.id,
                                                     values)
            members = cls._create_members(
                context, db_info, datastore, datastore_version, instances,
                locality, configuration, image_id, 1, len(instances),
                extdata_url)
        except Exception:
            if not cls._abandon(db_info) and extdata_url:
                # No member to delete later: nothing else removes them.
                provisioning.remove(context, db_info.id)
            raise
        LOG.info("k2hdkc cluster %s (%s): members %s created.", name,
                 db_info.id, [m.id for m in members])
        task_api.load(context, manager).create_cluster(db_info.id)
        return cls(context, db_info, datastore, datastore_version)

    @staticmethod
    def _abandon(db_info):
        """After a failed create: a cluster without members is removed;
        one with some members is left deletable (task NONE). Whether it
        was left."""
        members = inst_models.DBInstance.find_all(
            cluster_id=db_info.id, deleted=False).all()
        if members:
            db_info.update(task_status=ClusterTasks.NONE)
        else:
            db_info.update(task_status=ClusterTasks.NONE, deleted=True,
                           deleted_at=timeutils.utcnow())
        return bool(members)

    def _members(self):
        return inst_models.DBInstance.find_all(cluster_id=self.id,
                                               deleted=False).all()

    def delete(self):
        """Trove's delete, after telling every member to leave K2HR3.

        Trove stops each member with ``stop_db`` (no flag: the same call
        its reboot makes, which must not change the membership) and then
        deletes the server. Here each member first gets a ``stop_db`` cast
        with ``do_not_start_on_reboot=True``, which the agent of a member
        takes as "removed": it leaves the K2HR3 role and stops, with no
        ring step (the whole ring goes). The agent handles calls in order,
        so Trove's own ``stop_db`` waits behind it.
        """
        self.validate_cluster_available([ClusterTasks.NONE,
                                         ClusterTasks.DELETING])
        for db_inst in self._members():
            try:
                guest = clients.create_guest_client(
                    self.context, db_inst.id, self.datastore_version.manager)
                guest.leave_for_cluster_delete()
            except Exception as exc:  # the member may be gone already
                LOG.warning("k2hdkc cluster %(c)s: member %(m)s not told to "
                            "leave K2HR3 before delete: %(e)s",
                            {"c": self.id, "m": db_inst.id, "e": exc})
        super(K2hdkcCluster, self).delete()

    def grow(self, instances, image_id=None):
        LOG.info("Growing k2hdkc cluster %s by %d members.", self.id,
                 len(instances))
        self.validate_cluster_available()
        if not instances:
            raise exception.BadRequest("Grow needs at least one member.")
        manager = self.ds_version.manager
        existing = self._members()
        if not existing:
            raise exception.BadRequest(
                "k2hdkc cluster %s has no members to grow from." % self.id)
        model = existing[0]
        validate_members(self.context, instances, manager,
                         flavor_id=model.flavor_id,
                         volume_size=model.volume_size or 0)
        # The group the members run with, else the cluster's.
        configuration_id = model.configuration_id or self.configuration_id
        if not configuration_id:
            raise exception.BadRequest(
                "k2hdkc cluster %s has no configuration group for new "
                "members. %s" % (self.id, NEEDS_CONFIGURATION))

        self.db_info.update(task_status=ClusterTasks.GROWING_CLUSTER)
        try:
            locality = srv_grp.ServerGroup.convert_to_hint(self.server_group)
            first = next_member_number(self.name, [m.name for m in existing])
            # A role token of its own for this grow's members, where the
            # plugin provisioned the cluster.
            extdata_url = provisioning.server_extdata_url(self.context,
                                                          self.id)
            members = self._create_members(
                self.context, self.db_info, self.ds, self.ds_version,
                instances, locality, configuration_id, image_id, first,
                len(existing) + len(instances), extdata_url)
            task_api.load(self.context, manager).grow_cluster(
                self.id, [m.id for m in members])
        except Exception:
            self.db_info.update(task_status=ClusterTasks.NONE)
            raise
        return self.__class__(self.context, self.db_info, self.ds,
                              self.ds_version)

    def shrink(self, instance_ids):
        LOG.info("Shrinking k2hdkc cluster %s by %s.", self.id, instance_ids)
        self.validate_cluster_available()
        leaving = list(dict.fromkeys(instance_ids or []))
        if not leaving:
            raise exception.BadRequest("Shrink needs at least one member.")
        members = [m.id for m in self._members()]
        unknown = [i for i in leaving if i not in members]
        if unknown:
            raise exception.BadRequest(
                "Not members of k2hdkc cluster %s: %s."
                % (self.id, ", ".join(unknown)))
        needed = min_members(self.ds_version.manager)
        remaining = len(members) - len(leaving)
        if remaining < needed:
            raise exception.BadRequest(
                "A k2hdkc cluster keeps at least %d members (K2HDKC keeps "
                "every key on two servers, REPLICA = 1): removing %d of %d "
                "would leave %d." % (needed, len(leaving), len(members),
                                     remaining))

        self.db_info.update(task_status=ClusterTasks.SHRINKING_CLUSTER)
        try:
            task_api.load(self.context, self.ds_version.manager
                          ).shrink_cluster(self.id, leaving)
        except Exception:
            self.db_info.update(task_status=ClusterTasks.NONE)
            raise
        return self.__class__(self.context, self.db_info, self.ds,
                              self.ds_version)

    def restart(self):
        """One member after the other (the task manager's
        ``restart_cluster``)."""
        return self.rolling_restart()

    def upgrade(self, datastore_version):
        """One member after the other (the task manager's
        ``upgrade_cluster``): each back in the ring, merged and HEALTHY
        before the next. The versions themselves (no downgrade, no major
        change) are the agent's to check, before it stops anything."""
        if datastore_version.manager != self.ds_version.manager:
            raise exception.BadRequest(
                "A k2hdkc cluster upgrades to k2hdkc versions only: %s is "
                "a %s version."
                % (datastore_version.name, datastore_version.manager))
        return self.rolling_upgrade(datastore_version)

    def configuration_attach(self, configuration_id):
        raise exception.BadRequest(
            "A k2hdkc cluster keeps the configuration group it was created "
            "with: it names the K2HR3 role of the ring. Create a new "
            "cluster for another group.")

    def configuration_detach(self):
        raise exception.BadRequest(
            "A k2hdkc cluster keeps the configuration group it was created "
            "with: without it the members lose their K2HR3 role.")


class K2hdkcClusterView(ClusterView):

    def data(self):
        """Trove's view, and for a cluster whose K2HR3 objects the plugin
        made, the slave role's EXTDATA URL application hosts start
        ``k2hdkc-slave`` with (``k2hdkc_slave_extdata_url``)."""
        result = super(K2hdkcClusterView, self).data()
        url = provisioning.slave_extdata_url(self.cluster.id)
        if url:
            result["cluster"]["k2hdkc_slave_extdata_url"] = url
        return result

    def build_instances(self):
        return self._build_instances([MEMBER], [MEMBER])


class K2hdkcMgmtClusterView(MgmtClusterView):

    def build_instances(self):
        return self._build_instances([MEMBER], [MEMBER])
