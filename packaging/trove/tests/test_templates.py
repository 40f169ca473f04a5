"""config.template found and rendered by trove's own template code, parsed
by the plugin's parser, and consistent with the rules and the agent."""

import json
import re

import pytest

from conftest import REPO, rules_file, rust_const, run_json

import trove_k2hdkc

FLAVOR = {"id": "1", "name": "m1.small", "ram": 2048, "vcpus": 1}


@pytest.fixture(scope="module")
def rendered(trove_models):
    from trove.common import template

    _, dsv, _ = trove_models
    config = template.SingleInstanceConfigTemplate(dsv, FLAVOR, "9a5e2c35-0c5e-4a42-a1b3-8f7d3a1c2b10")
    return config.render(), dict(config.render_dict())


def test_trove_finds_and_renders_the_template(rendered):
    text, _ = rendered
    assert "chmpx-server-port=8020" in text
    assert "chmpx-slave-ctlport=8031" in text


def test_render_dict_gives_typed_defaults(rendered):
    _, values = rendered
    assert values == {
        "cluster-name": None,
        "extdata-url": None,
        "chmpx-server-port": 8020,
        "chmpx-server-ctlport": 8021,
        "chmpx-slave-ctlport": 8031,
        "http_proxy": None,
        "https_proxy": None,
        "no_proxy": None,
    }


def test_set_defaults_pass_trove_validation(rendered, trove_models):
    from trove.configuration.service import ConfigurationsController

    _, dsv, rules = trove_models
    _, values = rendered
    ConfigurationsController._validate_configuration({k: v for k, v in values.items() if v is not None}, dsv, rules)


def test_template_rules_and_agent_name_the_same_parameters(rendered):
    _, values = rendered
    rules = [p["name"] for p in json.loads(rules_file().read_text())["configuration-parameters"]]
    agent = rust_const("datastore/src/overrides.rs", "PARAMETERS")
    assert sorted(values) == sorted(rules) == sorted(agent)


def test_template_defaults_are_the_agents_and_the_security_groups():
    text = (REPO / "datastore/src/overrides.rs").read_text()
    agent = tuple(int(re.search(r"\b%s: (\d+),\n" % f, text).group(1)) for f in ("server_port", "server_ctlport", "slave_ctlport"))
    assert agent == trove_k2hdkc.CHMPX_PORTS == (8020, 8021, 8031)
    from trove.common import cfg

    assert [p[0] for p in cfg.CONF.k2hdkc.tcp_ports] == list(agent)


def test_an_operator_template_wins_over_the_plugins(tmp_path):
    """template_path (/etc/trove/templates by default) comes first, the
    plugin's directory last; the control renders the plugin's template."""
    (tmp_path / "k2hdkc").mkdir()
    (tmp_path / "k2hdkc" / "config.template").write_text("chmpx-server-port=28020\n")
    script = r"""
import json
from trove.common import cfg
cfg.CONF.set_default('template_path', %r)
from trove.common import utils
print(json.dumps(utils.ENV.get_template('k2hdkc/config.template').render()))
"""
    assert run_json(script % str(tmp_path)).strip() == "chmpx-server-port=28020"
    assert "chmpx-server-port=8020" in run_json(script % str(tmp_path / "nothing"))


CONTROL = r"""
import json, types
from trove.common import template
dsv = types.SimpleNamespace(datastore_name='k2hdkc', manager='k2hdkc', name='1.0.17', version='1.0.17')
config = template.SingleInstanceConfigTemplate(dsv, {'ram': 2048}, 'i1')
out = {}
for step in ('render', 'render_dict'):
    try:
        getattr(config, step)(); out[step] = 'ok'
    except Exception as exc:
        out[step] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.mark.parametrize("disable,expected", [
    ("", {"render": "ok", "render_dict": "ok"}),
    ("templates", {"render": "TemplatesNotFound", "render_dict": "TemplatesNotFound"}),
    ("parser", {"render": "ok", "render_dict": "NoConfigParserFound"}),
])
def test_template_and_parser_come_from_the_plugin(disable, expected):
    assert run_json(CONTROL, TROVE_K2HDKC_DISABLE=disable) == expected
