# K2HDKC in the Trove Dashboard (trove-k2hdkc-dashboard). Copy this file
# into openstack_dashboard/local/enabled/ beside trove-dashboard's own
# _17*.py files. It adds this plugin's app (capability lists, checks in the
# launch forms, the K2HDKC Overview templates) and shows the Database >
# Clusters panel, which trove-dashboard ships disabled (_1740); K2HDKC
# tenants need it. To keep the panel hidden, set DISABLED = True below:
# the app is then not loaded either.
PANEL = 'database_clusters'
PANEL_DASHBOARD = 'project'
PANEL_GROUP = 'database'
DISABLED = False
ADD_PANEL = 'trove_dashboard.content.database_clusters.panel.Clusters'
ADD_INSTALLED_APPS = ['trove_k2hdkc_dashboard']
