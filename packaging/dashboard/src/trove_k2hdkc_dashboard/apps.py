"""What the app changes in trove-dashboard when Django starts."""

from django.apps import AppConfig

from trove_k2hdkc_dashboard import DATASTORE


class K2hdkcDashboardConfig(AppConfig):
    name = "trove_k2hdkc_dashboard"
    verbose_name = "K2HDKC for the Trove Dashboard"

    def ready(self):
        from trove_k2hdkc_dashboard import capability
        from trove_k2hdkc_dashboard import forms
        from trove_k2hdkc_dashboard import hosts
        from trove_k2hdkc_dashboard import tabs
        capability.add_k2hdkc()
        forms.check_k2hdkc_launches()
        tabs.add_k2hdkc_facts()
        hosts.fix_cluster_member_host()


__all__ = ["K2hdkcDashboardConfig", "DATASTORE"]
