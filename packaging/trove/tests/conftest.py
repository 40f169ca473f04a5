"""Shared fixtures: the venv's interpreter in fresh processes, trove-manage
on a throw-away sqlite database, and trove's DB models in this process.

These tests run under the interpreter of the venv the plugin is installed
into (tests/run.sh), against the real trove package there.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
PLUGIN = HERE.parent
REPO = PLUGIN.parent.parent
BIN = pathlib.Path(sys.executable).parent
VERSION = "1.0.17"
IMAGE = "0b0bdc2b-7d2e-4d0e-9d33-3f4c0a0e8f11"


def child_env(**extra):
    env = dict(os.environ)
    env.pop("TROVE_K2HDKC_DISABLE", None)
    env["PYTHONWARNINGS"] = "ignore"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_python(code, **env):
    """Runs ``code`` in a fresh interpreter of the venv; returns the
    CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(**env), timeout=120)


def run_json(code, **env):
    """Runs ``code``, which prints one JSON document as its last line."""
    done = run_python(code, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def trove_manage(conf, *args, **env):
    cmd = [str(BIN / "trove-manage"), "--config-file", str(conf)] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, env=child_env(**env), timeout=120)


def ok(done):
    assert done.returncode == 0, "%s\n%s" % (done.stdout[-2000:], done.stderr[-4000:])
    return done


def rust_const(path, name):
    """The string items of a ``const NAME: &[&str] = &[...]`` in the repo."""
    text = (REPO / path).read_text()
    m = re.search(r"const %s: &\[&str\]\s*=\s*&\[(.*?)\];" % name, text, re.S)
    assert m, "%s not found in %s" % (name, path)
    body = re.sub(r"//[^\n]*", "", m.group(1))
    return re.findall(r'"([^"]+)"', body)


def rust_str(path, name):
    text = (REPO / path).read_text()
    m = re.search(r'const %s: &str = "([^"]*)";' % name, text)
    assert m, "%s not found in %s" % (name, path)
    return m.group(1)


def rules_file():
    import trove_k2hdkc

    return pathlib.Path(trove_k2hdkc.VALIDATION_RULES)


@pytest.fixture(scope="session")
def trove_db(tmp_path_factory):
    """A fresh trove database on sqlite with the k2hdkc datastore, version
    1.0.17 (default) and its validation rules, made with trove-manage."""
    d = tmp_path_factory.mktemp("trove")
    db = d / "trove.db"
    conf = d / "trove.conf"
    conf.write_text("[DEFAULT]\n\n[database]\nconnection = sqlite:///%s\n" % db)
    ok(trove_manage(conf, "db_sync"))
    ok(trove_manage(conf, "datastore_update", "k2hdkc", ""))
    ok(trove_manage(conf, "datastore_version_update", "k2hdkc", VERSION, "k2hdkc", IMAGE, "", 1))
    ok(trove_manage(conf, "datastore_update", "k2hdkc", VERSION))
    ok(trove_manage(conf, "db_load_datastore_config_parameters", "k2hdkc", VERSION, rules_file()))
    return {"dir": d, "db": db, "conf": conf}


@pytest.fixture(scope="session")
def trove_models(trove_db):
    """Trove's CONF parsed with the test trove.conf and its DB API configured
    in this process; returns (datastore, datastore_version, rules)."""
    from trove.common import cfg
    from trove.configuration import models as config_models
    from trove.datastore import models as datastore_models
    from trove.db import get_db_api

    cfg.parse_args(["trove-k2hdkc-tests", "--config-file", str(trove_db["conf"])])
    get_db_api().configure_db()
    ds, dsv = datastore_models.get_datastore_version(type="k2hdkc", version=VERSION)
    rules = list(config_models.DatastoreConfigurationParameters.load_parameters(dsv.id))
    return ds, dsv, rules
