"""What the launch forms check for K2HDKC.

A K2HDKC node learns its cluster from its configuration group (the K2HR3
values: ``cluster-name``, ``extdata-url``); without one, the instance or
cluster would be created and then fail on every guest. The forms say so
before anything is created, in the form, next to the field.
"""

from django.utils.translation import gettext_lazy as _

from trove_k2hdkc_dashboard import DATASTORE

NEEDS_CONFIGURATION = _(
    "K2HDKC needs a configuration group with the K2HR3 values "
    "(cluster-name; extdata-url too, unless Trove makes a cluster's K2HR3 "
    "objects): create one under Database > Configuration Groups, then "
    "choose it here.")


def is_k2hdkc(datastore):
    return bool(datastore) and DATASTORE in datastore.lower()


def _cluster_launch_clean(original):
    from trove_dashboard.content.databases.workflows import create_instance
    from trove_dashboard.utils import common as common_utils

    def clean(self):
        cleaned = original(self)
        value = self.data.get("datastore")
        if value:
            try:
                datastore, _version = create_instance.parse_datastore_and_version_text(
                    common_utils.unhexlify(value))
            except Exception:
                datastore = None
            if is_k2hdkc(datastore) and not self.data.get("configuration"):
                self._errors["configuration"] = self.error_class([NEEDS_CONFIGURATION])
        return cleaned
    clean.k2hdkc = True
    return clean


def _instance_advanced_clean(original):
    def clean(self):
        cleaned = original(self)
        datastore = getattr(self, "k2hdkc_datastore", None) or _datastore_of(self)
        if is_k2hdkc(datastore) and not cleaned.get("config"):
            self._errors["config"] = self.error_class([NEEDS_CONFIGURATION])
        return cleaned
    clean.k2hdkc = True
    return clean


def _datastore_of(form):
    """The datastore chosen in the Launch Instance workflow's details step."""
    from trove_dashboard.content.databases.workflows import create_instance
    from trove_dashboard.utils import common as common_utils
    value = form.data.get("datastore")
    if not value:
        return None
    try:
        return create_instance.parse_datastore_and_version_text(
            common_utils.unhexlify(value))[0]
    except Exception:
        return None


def check_k2hdkc_launches():
    """Wraps the clean() of Launch Cluster and of Launch Instance's
    Advanced step (once)."""
    from trove_dashboard.content.database_clusters import forms as cluster_forms
    from trove_dashboard.content.databases.workflows import create_instance

    launch = cluster_forms.LaunchForm
    if not getattr(launch.clean, "k2hdkc", False):
        launch.clean = _cluster_launch_clean(launch.clean)
    advanced = getattr(create_instance, "AdvancedAction", None)
    if advanced is not None and not getattr(advanced.clean, "k2hdkc", False):
        advanced.clean = _instance_advanced_clean(advanced.clean)
