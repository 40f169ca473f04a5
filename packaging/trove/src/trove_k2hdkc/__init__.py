"""Teaches an unmodified OpenStack Trove the ``k2hdkc`` datastore.

Importing this package installs a post-import hook (:mod:`trove_k2hdkc.hook`)
and nothing else: no Trove, oslo or third-party module is imported here. The
``trove_k2hdkc.pth`` file that ``pip install`` puts into site-packages
imports it at every interpreter start, so every Trove process (trove-api,
trove-taskmanager, trove-conductor, trove-manage, WSGI containers that run
``site``) gets the extensions the moment Trove loads the module each one
extends:

- ``trove.common.cfg``: the ``[k2hdkc]`` option group in ``CONF``, and a
  ``k2hdkc`` entry in the default of ``notification_service_id``;
- ``trove.common.constants``: ``REGISTRY_EXT_DEFAULTS['k2hdkc']``;
- ``trove.common.template``: ``SERVICE_PARSERS['k2hdkc']``, the parser of
  the rendered ``config.template``;
- ``trove.common.utils``: the plugin's template directory, appended to the
  Jinja loader Trove builds, after ``template_path`` and Trove's own.

``TROVE_K2HDKC_DISABLE=1`` turns all of it off; a comma-separated list of
part names (see :data:`trove_k2hdkc.hook.PARTS`) turns off only those.
"""

import os

#: The datastore manager name (``datastore_manager``, the option group).
MANAGER = "k2hdkc"

#: What ``datastore_versions.registry_ext`` gets when
#: ``trove-manage datastore_version_update`` is not given ``--registry-ext``.
#: K2HDKC guests run the Rust trove-guestagent, which does not read it; the
#: class named here exists and refuses to run in Trove's Python guest agent.
REGISTRY_EXT = "trove_k2hdkc.guest.Manager"

#: ``notification_service_id`` for k2hdkc (Trove tags usage events with it).
NOTIFICATION_SERVICE_ID = "e70f0f22-50c6-469d-90d5-efc2a270a0e4"

#: The chmpx ports the security group opens (server, server control,
#: slave control), as the configuration template's defaults.
CHMPX_PORTS = (8020, 8021, 8031)

#: The cluster strategies (``[k2hdkc] api_strategy`` and the others): the
#: three modules of :mod:`trove_k2hdkc.cluster`, laid out as Trove's own.
CLUSTER_STRATEGIES = {
    "api": "trove_k2hdkc.cluster.api.K2hdkcAPIStrategy",
    "taskmanager": "trove_k2hdkc.cluster.taskmanager.K2hdkcTaskManagerStrategy",
    "guestagent": "trove_k2hdkc.cluster.guestagent.K2hdkcGuestAgentStrategy",
}

#: Fewest members of a k2hdkc cluster: K2HDKC keeps each key on its owner
#: and one more server (``REPLICA = 1``), so a ring needs two servers.
MIN_CLUSTER_MEMBERS = 2

#: Where the guest mounts the data volume (the agent's default).
MOUNT_POINT = "/var/lib/antpickax/k2hdkc"

#: The plugin's template directory: ``k2hdkc/config.template`` and
#: ``k2hdkc/validation-rules.json`` under it.
TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

#: The validation rules to load with
#: ``trove-manage db_load_datastore_config_parameters``.
VALIDATION_RULES = os.path.join(TEMPLATES_DIR, MANAGER, "validation-rules.json")

#: The configuration template Trove renders for a k2hdkc instance.
CONFIG_TEMPLATE = os.path.join(TEMPLATES_DIR, MANAGER, "config.template")

from trove_k2hdkc import hook as _hook  # noqa: E402  (stdlib only)

_hook.install()
