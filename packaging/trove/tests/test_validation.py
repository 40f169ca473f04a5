"""Configuration-group values checked by trove's OWN validation
(ConfigurationsController._validate_configuration, what the API runs on
configuration create/update) against the rules trove-manage loaded."""

import pytest

GOOD = {
    "cluster-name": "mycluster",
    "extdata-url": "https://k2hr3.example.com/v1/extdata/trove/abc",
    "chmpx-server-port": 18020,
    "chmpx-server-ctlport": 18021,
    "chmpx-slave-ctlport": 18031,
    "http_proxy": "http://proxy.example.com:3128",
    "https_proxy": "http://proxy.example.com:3128",
    "no_proxy": "localhost,127.0.0.1",
}

BAD = [
    ({"chmpx-server-port": 80}, "less than the minimum"),
    ({"chmpx-server-ctlport": 999}, "less than the minimum"),
    ({"chmpx-slave-ctlport": 32768}, "greater than the maximum"),  # chmpx keeps ports in a C short
    ({"chmpx-server-port": "abc"}, "not of type integer"),
    ({"chmpx-server-port": "8020"}, "not of type integer"),
    ({"chmpx-server-port": 8020.5}, "not of type integer"),
    ({"cluster-name": 5}, "not of type string"),
    ({"extdata-url": True}, "not of type string"),
    ({"max_connections": 100}, "not supported"),
    ({"colour": "red"}, "not supported"),
]


def validate(trove_models, values):
    from trove.configuration.service import ConfigurationsController

    _, dsv, rules = trove_models
    ConfigurationsController._validate_configuration(values, dsv, rules)


def test_rules_come_from_the_database(trove_models):
    _, dsv, rules = trove_models
    assert dsv.manager == "k2hdkc"
    assert len(rules) == 8


def test_good_values_are_accepted(trove_models):
    validate(trove_models, GOOD)
    validate(trove_models, {"chmpx-server-port": 1000, "chmpx-slave-ctlport": 32767})
    validate(trove_models, {"CHMPX-SERVER-PORT": 8020})  # trove compares names case-insensitively


@pytest.mark.parametrize("values,message", BAD, ids=[repr(v) for v, _ in BAD])
def test_bad_values_are_rejected(trove_models, values, message):
    from trove.common import exception

    with pytest.raises(exception.UnprocessableEntity) as err:
        validate(trove_models, values)
    assert message in str(err.value)


def test_one_bad_value_spoils_a_good_group(trove_models):
    from trove.common import exception

    with pytest.raises(exception.UnprocessableEntity):
        validate(trove_models, dict(GOOD, **{"chmpx-server-port": 80}))


def test_without_rules_configuration_groups_are_refused(trove_models):
    """The control: the same code with no rules loaded refuses everything."""
    from trove.common import exception
    from trove.configuration.service import ConfigurationsController

    _, dsv, _ = trove_models
    with pytest.raises(exception.UnprocessableEntity, match="not supported for this datastore"):
        ConfigurationsController._validate_configuration(GOOD, dsv, [])

