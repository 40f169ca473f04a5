"""trove-manage (the real CLI of trove 26) on a fresh sqlite database:
the commands the README gives the operator."""

import json
import sqlite3

from conftest import IMAGE, VERSION, ok, rules_file, trove_manage

import trove_k2hdkc


def rows(db, sql, *args):
    con = sqlite3.connect(str(db))
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def test_datastore_and_default_version_registered(trove_db):
    [ds] = rows(trove_db["db"], "select * from datastores where name = 'k2hdkc'")
    [v] = rows(trove_db["db"], "select * from datastore_versions where datastore_id = ? and name = ?", ds["id"], VERSION)
    assert ds["default_version_id"] == v["id"]
    assert v["manager"] == "k2hdkc"
    assert v["image_id"] == IMAGE
    assert v["active"] == 1
    assert v["version"] == VERSION
    assert v["registry_ext"] == trove_k2hdkc.REGISTRY_EXT


def test_explicit_registry_ext_flag_is_stored(trove_db):
    done = ok(trove_manage(trove_db["conf"], "datastore_version_update", "k2hdkc", "1.0.17-flag", "k2hdkc", IMAGE, "", 0,
                           "--registry-ext", "trove_k2hdkc.guest.Manager", "--image-tags", "trove,k2hdkc"))
    assert "updated" in done.stdout
    [v] = rows(trove_db["db"], "select * from datastore_versions where name = '1.0.17-flag'")
    assert (v["registry_ext"], v["active"], v["image_tags"]) == ("trove_k2hdkc.guest.Manager", 0, "trove,k2hdkc")


def test_validation_rules_loaded_as_in_the_file(trove_db):
    [v] = rows(trove_db["db"], "select id from datastore_versions where name = ?", VERSION)
    loaded = {r["name"]: r for r in rows(trove_db["db"],
              "select * from datastore_configuration_parameters where datastore_version_id = ?", v["id"])}
    wanted = json.loads(rules_file().read_text())["configuration-parameters"]
    assert sorted(loaded) == sorted(p["name"] for p in wanted)
    assert len(loaded) == 8
    for p in wanted:
        r = loaded[p["name"]]
        assert r["data_type"] == p["type"]
        assert bool(r["restart_required"]) == p["restart_required"]
        if p["type"] == "integer":
            assert (int(r["min_size"]), int(r["max_size"])) == (1000, 32767), r
        else:
            assert r["min_size"] is None and r["max_size"] is None


def test_loading_the_rules_again_does_not_duplicate_them(trove_db):
    ok(trove_manage(trove_db["conf"], "db_load_datastore_config_parameters", "k2hdkc", VERSION, rules_file()))
    [v] = rows(trove_db["db"], "select id from datastore_versions where name = ?", VERSION)
    [n] = rows(trove_db["db"], "select count(*) as n from datastore_configuration_parameters where datastore_version_id = ?", v["id"])
    assert n["n"] == 8


def test_without_the_plugin_trove_refuses_the_datastore(trove_db):
    """What an unpatched trove 26 does (and why the plugin exists)."""
    done = trove_manage(trove_db["conf"], "datastore_version_update", "k2hdkc", "9.9.9", "k2hdkc", IMAGE, "", 1,
                        TROVE_K2HDKC_DISABLE="1")
    assert done.returncode != 0
    out = done.stdout + done.stderr  # trove-manage logs to stdout
    assert "NoSuchOptError: no such option k2hdkc" in out
    assert rows(trove_db["db"], "select * from datastore_versions where name = '9.9.9'") == []


def test_registry_ext_needs_the_default_or_the_flag(trove_db):
    done = trove_manage(trove_db["conf"], "datastore_version_update", "k2hdkc", "9.9.8", "k2hdkc", IMAGE, "", 1,
                        TROVE_K2HDKC_DISABLE="registry_ext")
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "NOT NULL constraint failed: datastore_versions.registry_ext" in out
    ok(trove_manage(trove_db["conf"], "datastore_version_update", "k2hdkc", "9.9.8", "k2hdkc", IMAGE, "", 1,
                    "--registry-ext", trove_k2hdkc.REGISTRY_EXT, TROVE_K2HDKC_DISABLE="registry_ext"))
    [v] = rows(trove_db["db"], "select registry_ext from datastore_versions where name = '9.9.8'")
    assert v["registry_ext"] == trove_k2hdkc.REGISTRY_EXT
