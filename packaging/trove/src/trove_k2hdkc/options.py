"""The ``[k2hdkc]`` option group.

Two kinds of options share the group, as Trove's own datastore groups do:

- what the Trove control plane reads through ``CONF.get(manager)`` for a
  k2hdkc instance or cluster (security group ports, volume, replication,
  root, backups; clusters: ``cluster_support``, the three ``*_strategy``
  classes, ``min_cluster_member_count`` and the ring step timeouts
  ``cluster_merge_timeout``, ``cluster_merge_rearm_after`` and
  ``cluster_member_timeout``);
- what the K2HDKC guest agent reads from the same group in
  ``trove-guestagent.conf`` (image, K2HR3 access, timings). Trove's
  processes never read these; registering them documents them
  (``oslo-config-generator --namespace trove_k2hdkc``) and lets one
  ``[k2hdkc]`` text serve both files.

Every name here is one the agent accepts (``datastore/src/lib.rs``
``OPTIONS``), so one ``[k2hdkc]`` text serves both files; the defaults of
the agent's options are the agent's.
"""

from trove_k2hdkc import CHMPX_PORTS
from trove_k2hdkc import CLUSTER_STRATEGIES
from trove_k2hdkc import MANAGER
from trove_k2hdkc import MIN_CLUSTER_MEMBERS
from trove_k2hdkc import MOUNT_POINT


def group():
    from oslo_config import cfg

    return cfg.OptGroup(MANAGER, title="K2HDKC options",
                        help="Options of the k2hdkc datastore (trove-k2hdkc plugin).")


def build(ports_type=None):
    """The options; ``ports_type`` is the item type of the port lists
    (Trove's ``ListOfPortsType``: a port or a ``low-high`` range)."""
    from oslo_config import cfg
    from oslo_config import types

    if ports_type is None:
        ports_type = types.Range(1, 65535)
    return [
        # --- read by the Trove control plane -------------------------------
        cfg.ListOpt("tcp_ports", default=[str(p) for p in CHMPX_PORTS], item_type=ports_type,
                    help="TCP ports or port ranges the instance's security group opens "
                         "(when trove_security_groups_support is True): the chmpx server "
                         "port, server control port and slave control port. Keep them in "
                         "line with the chmpx-* configuration parameters."),
        cfg.ListOpt("udp_ports", default=[], item_type=ports_type,
                    help="UDP ports or port ranges the security group opens."),
        cfg.BoolOpt("volume_support", default=True,
                    help="Whether to give each instance a Cinder volume for its data."),
        cfg.StrOpt("device_path", default="/dev/vdb",
                   help="The data volume's device in the guest."),
        cfg.StrOpt("mount_point", default=MOUNT_POINT,
                   help="Where the guest mounts the data volume (the k2hdkc data "
                        "directory)."),
        cfg.StrOpt("backup_strategy", default="k2hlinetool-archive",
                   help="Backup strategy: trove-api accepts backups of a datastore "
                        "only when it is set. The agent takes the k2hash archive "
                        "(k2hlinetool ar put) whatever the name; unset it to refuse "
                        "backups (DatastoreOperationNotSupported)."),
        cfg.StrOpt("replication_strategy", default=None,
                   help="Replication strategy. Unset: replicas are refused "
                        "(ReplicationNotSupported); K2HDKC replicates inside its ring."),
        cfg.StrOpt("replication_namespace", default=None,
                   help="Module of the replication strategy (unset, see "
                        "replication_strategy)."),
        cfg.StrOpt("root_controller", default=None,
                   help="Root controller class. Unset: the root API answers "
                        "DatastoreOperationNotSupported (K2HDKC has no root user)."),
        cfg.BoolOpt("root_on_create", default=False,
                    help="Enable root at instance creation (not a K2HDKC concept)."),
        cfg.BoolOpt("cluster_support", default=True,
                    help="Whether clusters of this datastore can be created (openstack "
                         "database cluster create). The members form one K2HDKC ring; "
                         "see the api_strategy, taskmanager_strategy and "
                         "guestagent_strategy options."),
        cfg.StrOpt("api_strategy", default=CLUSTER_STRATEGIES["api"],
                   help="Class that validates and starts k2hdkc cluster create, grow, "
                        "shrink and restart requests in trove-api."),
        cfg.StrOpt("taskmanager_strategy", default=CLUSTER_STRATEGIES["taskmanager"],
                   help="Class that runs the k2hdkc cluster ring steps in "
                        "trove-taskmanager."),
        cfg.StrOpt("guestagent_strategy", default=CLUSTER_STRATEGIES["guestagent"],
                   help="Class of the guest RPC client with the k2hdkc_ring_* calls."),
        cfg.IntOpt("min_cluster_member_count", default=MIN_CLUSTER_MEMBERS, min=MIN_CLUSTER_MEMBERS,
                   help="Fewest members a k2hdkc cluster may have, at create and after a "
                        "shrink. K2HDKC keeps every key on two servers (REPLICA = 1), so "
                        "fewer than %d is refused." % MIN_CLUSTER_MEMBERS),
        cfg.IntOpt("cluster_merge_timeout", default=600, min=1, max=3600,
                   help="Seconds one whole-ring merge (k2hdkc_ring_merge) may take during "
                        "cluster create, grow and shrink. The RPC waits a little longer."),
        cfg.IntOpt("cluster_merge_rearm_after", default=120, min=1, max=3600,
                   help="When a merge leaves a server stuck at [Doing], the agent aborts "
                        "it and sends MERGE again only this many seconds after the MERGE "
                        "it repairs: chmpx 1.0.111 loses a quick answer from k2hdkc and "
                        "then polls for about 70 s (longer on a loaded host), and a MERGE "
                        "sent meanwhile is lost too."),
        cfg.IntOpt("cluster_member_timeout", default=120, min=1, max=3600,
                   help="Seconds any other ring step on one member may take "
                        "(k2hdkc_ring_converge, service in/out, reattach, leaving the "
                        "K2HR3 role at shrink, a restart). The RPC waits a little longer."),
        cfg.StrOpt("k2hr3_provision_url", default=None,
                   help="K2HR3 API URL (e.g. https://k2hr3.example.com:18080) where "
                        "trove-api makes a cluster's K2HR3 roles, resources, policies "
                        "and role tokens with the tenant's own token, when its "
                        "configuration group names a cluster-name but no extdata-url; "
                        "the cluster's delete removes them. Unset: every group must "
                        "give an extdata-url made by hand."),
        cfg.StrOpt("k2hr3_provision_ca_file", default=None,
                   help="CA bundle that verifies k2hr3_provision_url's TLS certificate "
                        "(default: the system's)."),
        # --- read by the guest agent (trove-guestagent.conf) ---------------
        cfg.StrOpt("docker_image", default="antpickax/k2hdkc",
                   help="The k2hdkc server image. Without a tag, the datastore version "
                        "is the tag (e.g. registry.example.com/k2hdkc:1.0.17)."),
        cfg.StrOpt("backup_docker_image", default=None,
                   help="Unused: the agent takes and loads backups with the "
                        "k2hdkc image's own k2hlinetool, in the node's containers."),
        cfg.StrOpt("database_service_uname", default="database",
                   help="The name of the database user in the guest."),
        cfg.StrOpt("database_service_uid", default="1001",
                   help="The uid the k2hdkc containers run as and that owns the data."),
        cfg.StrOpt("database_service_gid", default="1001",
                   help="The gid of the database user."),
        cfg.StrOpt("config_dir", default="/etc/antpickax",
                   help="Guest directory of k2hdkc.ini (mounted read-only into the "
                        "containers at /etc/antpickax)."),
        cfg.StrOpt("k2hr3_api_url", default=None,
                   help="K2HR3 API URL, with k2hr3_role and k2hr3_role_token, instead "
                        "of the extdata-url configuration parameter."),
        cfg.StrOpt("k2hr3_role", default=None,
                   help="K2HR3 role (yrn) the node registers in."),
        cfg.StrOpt("k2hr3_role_token", default=None, secret=True,
                   help="K2HR3 role token."),
        cfg.IntOpt("k2hr3_poll_interval_ms", default=2000,
                   help="How often the node re-reads its K2HR3 resource (ms; the agent "
                        "uses at least 200)."),
        cfg.IntOpt("mq_msg_max", default=1024,
                   help="fs.mqueue.msg_max of the chmpx IPC namespace."),
        cfg.IntOpt("msgqueue_bytes", default=67108864,
                   help="RLIMIT_MSGQUEUE (bytes) of the chmpx and k2hdkc containers; "
                        "0 keeps the engine's default (819200). Raising it needs "
                        "CAP_SYS_RESOURCE on the guest's Docker engine."),
        cfg.IntOpt("startup_wait", default=120,
                   help="Seconds to wait for the first node and for this node to serve."),
        cfg.StrOpt("network_mode", default="host",
                   help="The containers' network namespace: host (the guest VM's) or "
                        "container:NAME."),
        cfg.StrOpt("docker_registry_username", default=None,
                   help="User for pulling docker_image from a private registry."),
        cfg.StrOpt("docker_registry_password", default=None, secret=True,
                   help="Password for pulling docker_image."),
    ]


def list_opts():
    """Entry point ``oslo.config.opts``: ``trove_k2hdkc``."""
    try:
        from trove.common.cfg import ListOfPortsType
    except ImportError:
        ListOfPortsType = None
    return [(group(), build(ListOfPortsType))]
