"""K2HDKC in the Trove Dashboard, as a Horizon plugin.

trove-dashboard decides from lists of datastore names which datastores may
launch, grow and shrink clusters (``content/databases/db_capability.py``)
and picks the Overview tab's template by datastore name. This app, listed
in Horizon's ``INSTALLED_APPS`` by its ``enabled/`` file, adds ``k2hdkc``
to those lists when Django starts (``apps.py``), brings the K2HDKC
Overview templates, and checks in the launch forms what K2HDKC needs (a
configuration group with the K2HR3 values). No trove-dashboard file is
edited.
"""

DATASTORE = "k2hdkc"
