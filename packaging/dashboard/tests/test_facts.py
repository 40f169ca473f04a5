"""The Overview tabs' facts: masking, defaults, members."""

from trove_k2hdkc_dashboard import facts


def test_the_extdata_token_is_never_shown():
    url = "https://k2hr3.example.com:18080/v1/extdata/trove/9f2c-secret-token"
    shown = facts.mask_extdata_url(url)
    assert shown == "https://k2hr3.example.com:18080/v1/extdata/***"
    assert "secret" not in shown
    assert facts.mask_extdata_url("http://h/other/path/tok") == "http://h/***"
    assert facts.mask_extdata_url("not a url") == "***"
    assert facts.mask_extdata_url(None) == ""


def test_configuration_values_with_the_plugins_default_ports():
    f = facts.configuration_facts({"cluster-name": "c1", "extdata-url": "http://h:1/v1/extdata/x/t",
                                   "chmpx-server-port": 18020})
    assert f == {"cluster_name": "c1", "extdata_url": "http://h:1/v1/extdata/***",
                 "server_port": 18020, "server_ctlport": 8021, "slave_ctlport": 8031}
    assert facts.configuration_facts(None)["cluster_name"] == ""


def test_members_and_their_addresses_from_trove_shapes():
    cluster = {"instances": [
        {"name": "m1", "id": "1", "status": "ACTIVE",
         "addresses": [{"address": "10.0.0.5", "type": "private"}]},
        {"name": "m2", "id": "2", "status": "BUILD", "ip": ["10.0.0.6"]},
        {"name": "m3", "id": "3"},
        {"name": "m4", "id": "4", "ip": [{"address": "10.0.0.7", "type": "private"}]},
    ]}
    assert facts.members(cluster) == [
        {"name": "m1", "id": "1", "status": "ACTIVE", "addresses": "10.0.0.5"},
        {"name": "m2", "id": "2", "status": "BUILD", "addresses": "10.0.0.6"},
        {"name": "m3", "id": "3", "status": "", "addresses": ""},
        {"name": "m4", "id": "4", "status": "", "addresses": "10.0.0.7"},
    ]


def test_the_slave_url_trove_made_is_kept_whole_for_the_reveal_and_masked_for_the_page():
    class Cluster(object):  # troveclient's resource: the view's keys as attributes
        k2hdkc_slave_extdata_url = "https://k2hr3.example.com:18080/v1/extdata/trove/slave-secret"

    f = facts.slave_facts(Cluster())
    assert f == {"url": Cluster.k2hdkc_slave_extdata_url,
                 "masked": "https://k2hr3.example.com:18080/v1/extdata/***"}
    assert facts.slave_facts({"k2hdkc_slave_extdata_url": None}) is None
    assert facts.slave_facts({}) is None  # a cluster whose group names its own extdata-url
