"""The [k2hdkc] option group and the other registrations, as every Trove
process sees them: fresh interpreters of the venv, no explicit import of
the plugin (the .pth file is what activates it)."""

import importlib.metadata
import pathlib
import sysconfig
import types

import pytest

from conftest import rust_const, rust_str, run_json, run_python

import trove_k2hdkc

OPTIONS_SCRIPT = r"""
import json
from trove.common import cfg
from trove.common import constants
from trove.common import template
CONF = cfg.CONF
g = CONF.get('k2hdkc')
CONF.set_override('datastore_manager', 'k2hdkc')
print(json.dumps({
    'tcp_ports': [[p[0], p[-1]] for p in CONF.k2hdkc.tcp_ports],
    'udp_ports': list(CONF.k2hdkc.udp_ports),
    'mount_point': CONF.k2hdkc.mount_point,
    'device_path': g.device_path,
    'volume_support': g.volume_support,
    'docker_image': CONF.k2hdkc.docker_image,
    'backup_docker_image': g.get('backup_docker_image'),
    'backup_strategy': g.get('backup_strategy', 'absent'),
    'replication_strategy': g.replication_strategy,
    'replication_namespace': g.replication_namespace,
    'root_controller': g.get('root_controller'),
    'root_on_create': g.root_on_create,
    'cluster_support': g.get('cluster_support'),
    'database_service_uid': g.database_service_uid,
    'config_dir': g.config_dir,
    'k2hr3_poll_interval_ms': g.k2hr3_poll_interval_ms,
    'via_get_configuration_property': cfg.get_configuration_property('mount_point'),
    'names': sorted(g.keys()),
    'registry_ext': constants.REGISTRY_EXT_DEFAULTS.get('k2hdkc'),
    'parser': 'k2hdkc' in template.SERVICE_PARSERS,
    'notification_service_id': CONF.notification_service_id.get('k2hdkc'),
    'mysql_tcp_ports': [[p[0], p[-1]] for p in CONF.mysql.tcp_ports],
}))
"""


@pytest.fixture(scope="module")
def fresh():
    return run_json(OPTIONS_SCRIPT)


def test_pth_file_is_installed_into_site_packages():
    purelib = pathlib.Path(sysconfig.get_paths()["purelib"])
    pth = purelib / "trove_k2hdkc.pth"
    assert pth.read_text().strip() == "import trove_k2hdkc"
    files = [str(f) for f in importlib.metadata.files("trove-k2hdkc")]
    assert "trove_k2hdkc.pth" in files, files


def test_interpreter_start_is_cheap_and_imports_no_trove():
    seen = run_json("import json, sys; print(json.dumps(sorted(sys.modules)))")
    assert "trove_k2hdkc.hook" in seen
    heavy = [m for m in seen if m.split(".")[0] in ("trove", "oslo_config", "jinja2", "oslo_log", "trove_k2hdkc.extend")]
    assert heavy == [], heavy
    assert "trove_k2hdkc.extend" not in seen


def test_options_resolve_with_the_agents_defaults(fresh):
    assert fresh["tcp_ports"] == [[8020, 8020], [8021, 8021], [8031, 8031]]
    assert fresh["udp_ports"] == []
    assert fresh["mount_point"] == "/var/lib/antpickax/k2hdkc"
    assert fresh["via_get_configuration_property"] == "/var/lib/antpickax/k2hdkc"
    assert fresh["device_path"] == "/dev/vdb"
    assert fresh["volume_support"] is True
    assert fresh["docker_image"] == "antpickax/k2hdkc"
    assert fresh["backup_docker_image"] is None
    assert fresh["backup_strategy"] == "k2hlinetool-archive"
    assert fresh["replication_strategy"] is None
    assert fresh["replication_namespace"] is None
    assert fresh["root_controller"] is None
    assert fresh["root_on_create"] is False
    assert fresh["cluster_support"] is True
    assert fresh["database_service_uid"] == "1001"
    assert fresh["config_dir"] == "/etc/antpickax"
    assert fresh["k2hr3_poll_interval_ms"] == 2000
    # the cluster strategies and their options (tests/test_cluster.py)
    for name in ("api_strategy", "taskmanager_strategy", "guestagent_strategy",
                 "min_cluster_member_count", "cluster_merge_timeout", "cluster_member_timeout"):
        assert name in fresh["names"]


def test_registry_ext_parser_and_notification_id(fresh):
    assert fresh["registry_ext"] == trove_k2hdkc.REGISTRY_EXT
    assert fresh["parser"] is True
    assert fresh["notification_service_id"] == trove_k2hdkc.NOTIFICATION_SERVICE_ID


def test_other_datastores_are_untouched(fresh):
    assert fresh["mysql_tcp_ports"] == [[3306, 3306]]


def test_disabled_plugin_leaves_trove_as_upstream_ships_it():
    """The control: without the plugin the same look-ups fail, so the tests
    above do test the plugin."""
    got = run_json(r"""
import json
from oslo_config.cfg import NoSuchOptError
from trove.common import cfg, constants, template
try:
    cfg.CONF.get('k2hdkc'); group = 'present'
except NoSuchOptError:
    group = 'missing'
print(json.dumps({'group': group, 'ext': 'k2hdkc' in constants.REGISTRY_EXT_DEFAULTS,
                  'parser': 'k2hdkc' in template.SERVICE_PARSERS}))
""", TROVE_K2HDKC_DISABLE="1")
    assert got == {"group": "missing", "ext": False, "parser": False}


def test_plugin_does_not_break_the_rest_of_the_venv():
    got = run_json(r"""
import json
import oslo_messaging
import trove.guestagent.api
import trove.conductor.api
import trove.taskmanager.models
import trove.instance.models
import trove.instance.views
import trove.taskmanager.manager
import trove.cmd.api, trove.cmd.taskmanager, trove.cmd.conductor, trove.cmd.manage
from trove.common import cfg
from trove_k2hdkc import hook, instance
wrapped = [getattr(f, instance.MARK, False) for f in (
    trove.instance.models.Instance.create.__func__, trove.instance.views.InstanceDetailView.data,
    trove.taskmanager.manager.Manager.delete_instance)]
print(json.dumps({'errors': hook.errors, 'applied': sorted(hook.applied()), 'wrapped': wrapped,
                  'api': trove.guestagent.api.API.__name__,
                  'mysql': cfg.CONF.mysql.docker_image}))
""")
    assert got["errors"] == []
    assert got["applied"] == sorted(["options", "notification", "registry_ext", "parser", "templates",
                                     "lone_instance_create", "lone_instance_show", "lone_instance_delete"])
    assert got["wrapped"] == [True, True, True]
    assert got["api"] == "API"
    assert got["mysql"] == "mysql"


def test_config_file_values_override_and_bad_ports_are_refused(tmp_path):
    conf = tmp_path / "trove.conf"
    conf.write_text("[k2hdkc]\ntcp_ports = 18020,18021-18022\ndocker_image = registry.example.com/k2hdkc\n")
    got = run_json(r"""
import json
from trove.common import cfg
cfg.parse_args(['x', '--config-file', %r])
print(json.dumps({'ports': [[p[0], p[-1]] for p in cfg.CONF.k2hdkc.tcp_ports],
                  'image': cfg.CONF.k2hdkc.docker_image}))
""" % str(conf))
    assert got == {"ports": [[18020, 18020], [18021, 18022]], "image": "registry.example.com/k2hdkc"}

    conf.write_text("[k2hdkc]\ntcp_ports = 80200\n")
    done = run_python(r"""
from trove.common import cfg
cfg.parse_args(['x', '--config-file', %r])
print(cfg.CONF.k2hdkc.tcp_ports)
""" % str(conf))
    assert done.returncode != 0
    assert "tcp_ports" in done.stderr


def test_security_group_opens_the_chmpx_ports():
    """trove's own neutron helper, fed the group's tcp_ports."""
    from trove.common import cfg
    from trove.common import neutron

    bodies = []
    client = types.SimpleNamespace(create_security_group_rule=bodies.append)
    neutron.create_security_group_rule(client, "sg", "tcp", cfg.CONF.get("k2hdkc").tcp_ports, ["0.0.0.0/0"])
    ports = sorted((b["security_group_rule"]["port_range_min"], b["security_group_rule"]["port_range_max"]) for b in bodies)
    assert ports == [(8020, 8020), (8021, 8021), (8031, 8031)]


def test_backups_are_accepted_and_unsupported_operations_refused_by_trove():
    from trove.backup import models as backup_models
    from trove.common import cfg
    from trove.common import exception
    from trove.common.strategies.cluster import strategy
    from trove.extensions.common import service as ext_service

    instance = types.SimpleNamespace(datastore_version=types.SimpleNamespace(manager="k2hdkc"),
                                     datastore=types.SimpleNamespace(name="k2hdkc"))
    # Backups are accepted (backup_strategy is set)...
    backup_models.Backup.validate_can_perform_action(instance, "backup_create")
    # ...and refused when an operator unsets it.
    cfg.CONF.set_override("backup_strategy", None, group="k2hdkc")
    try:
        with pytest.raises(exception.DatastoreOperationNotSupported):
            backup_models.Backup.validate_can_perform_action(instance, "backup_create")
    finally:
        cfg.CONF.clear_override("backup_strategy", group="k2hdkc")
    with pytest.raises(exception.DatastoreOperationNotSupported):
        ext_service.RootController().load_root_controller("k2hdkc")
    assert ext_service.RootController().load_root_controller("mysql") is not None  # the control
    assert type(strategy.load_taskmanager_strategy("k2hdkc")).__name__ == "K2hdkcTaskManagerStrategy"


def test_registry_ext_names_a_class_that_refuses_to_run():
    from trove.common import constants
    from trove.common import utils

    cls = utils.import_class(constants.REGISTRY_EXT_DEFAULTS["k2hdkc"])
    with pytest.raises(RuntimeError, match="Rust trove-guestagent"):
        cls()


def test_every_option_is_one_the_agent_accepts():
    """The agent refuses unknown [k2hdkc] keys in trove-guestagent.conf."""
    from trove.common import cfg

    agent = set(rust_const("datastore/src/lib.rs", "OPTIONS"))
    ours = set(cfg.CONF.get("k2hdkc").keys())
    assert ours - agent == set(), "unknown to the agent: %s" % sorted(ours - agent)
    assert cfg.CONF.k2hdkc.mount_point == rust_str("datastore/src/lib.rs", "DEFAULT_MOUNT_POINT")


def test_oslo_config_generator_entry_point():
    eps = importlib.metadata.entry_points(group="oslo.config.opts")
    ep = [e for e in eps if e.name == "trove_k2hdkc"]
    assert ep, "no oslo.config.opts entry point"
    [(group, opts)] = ep[0].load()()
    assert group.name == "k2hdkc"
    assert {"tcp_ports", "mount_point", "docker_image"} <= {o.dest for o in opts}


def test_importing_the_plugin_late_still_extends_trove():
    """Where site does not run the .pth (python -S, some embedders), an
    explicit ``import trove_k2hdkc`` after Trove is loaded does the same."""
    got = run_json(r"""
import json, os
from oslo_config.cfg import NoSuchOptError
from trove.common import cfg, constants, template, utils
try:
    cfg.CONF.get('k2hdkc'); before = True
except NoSuchOptError:
    before = False
del os.environ['TROVE_K2HDKC_DISABLE']
import trove_k2hdkc
from trove_k2hdkc import hook
assert hook.install()
print(json.dumps({'before': before, 'after': cfg.CONF.k2hdkc.mount_point,
                  'ext': constants.REGISTRY_EXT_DEFAULTS.get('k2hdkc'),
                  'parser': 'k2hdkc' in template.SERVICE_PARSERS,
                  'template': bool(utils.ENV.get_template('k2hdkc/config.template'))}))
""", TROVE_K2HDKC_DISABLE="1")
    assert got == {"before": False, "after": trove_k2hdkc.MOUNT_POINT, "ext": trove_k2hdkc.REGISTRY_EXT,
                   "parser": True, "template": True}


def test_check_command_reports_a_missing_part():
    import subprocess
    import sys

    from conftest import child_env

    cmd = [sys.executable, "-m", "trove_k2hdkc", "--check"]
    good = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=120)
    assert good.returncode == 0, good.stderr[-2000:]
    assert "tcp_ports=8020,8021,8031" in good.stdout
    bad = subprocess.run(cmd, capture_output=True, text=True, env=child_env(TROVE_K2HDKC_DISABLE="templates"), timeout=120)
    assert bad.returncode == 1
    assert "not applied: templates" in bad.stderr
