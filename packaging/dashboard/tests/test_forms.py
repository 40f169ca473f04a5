"""The launch forms' K2HDKC check, on trove-dashboard's real form classes
(Django configured as Horizon configures it)."""

import os

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openstack_dashboard.settings")
django.setup()

from trove_dashboard.content.database_clusters import forms as cluster_forms  # noqa: E402
from trove_dashboard.content.databases.workflows import create_instance  # noqa: E402
from trove_dashboard.utils import common as common_utils  # noqa: E402

from trove_k2hdkc_dashboard import forms  # noqa: E402


class FakeLaunch:
    """Just what LaunchForm.clean reads."""

    def __init__(self, data):
        self.data = data
        self.cleaned_data = dict(data)
        self._errors = {}
        self.error_class = list

    def _build_widget_field_name(self, ds, version):
        return cluster_forms.LaunchForm._build_widget_field_name(self, ds, version)

    def _build_datastore_display_text(self, ds, version):
        return cluster_forms.LaunchForm._build_datastore_display_text(self, ds, version)


def launch_data(datastore, configuration):
    value = common_utils.hexlify("%s - 1.0.17" % datastore)
    return {"datastore": value, value: "flavor-1", "num_instances": "3",
            "configuration": configuration}


def test_cluster_launch_without_a_configuration_says_why_in_the_form():
    forms.check_k2hdkc_launches()
    forms.check_k2hdkc_launches()  # wrapped once
    clean = cluster_forms.LaunchForm.clean
    form = FakeLaunch(launch_data("k2hdkc", ""))
    clean(form)
    assert form._errors["configuration"] == [forms.NEEDS_CONFIGURATION]
    ok = FakeLaunch(launch_data("k2hdkc", "cfg-1"))
    clean(ok)
    assert "configuration" not in ok._errors
    other = FakeLaunch(launch_data("mongodb", ""))
    clean(other)
    assert "configuration" not in other._errors


@pytest.mark.parametrize("datastore,config,error", [
    ("k2hdkc", "", True), ("k2hdkc", "cfg-1", False), ("mysql", "", False)])
def test_instance_launch_advanced_step_checks_k2hdkc(monkeypatch, datastore, config, error):
    forms.check_k2hdkc_launches()
    # The original clean() (Trove lookups) is replaced by what it returns.
    monkeypatch.setattr(forms, "_datastore_of", lambda form: datastore)
    wrapped = forms._instance_advanced_clean(lambda self: {"config": config or None})
    form = FakeLaunch({})
    wrapped(form)
    assert ("config" in form._errors) is error
    assert getattr(create_instance.AdvancedAction.clean, "k2hdkc", False)
