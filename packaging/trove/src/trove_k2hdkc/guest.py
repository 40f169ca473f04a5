"""The class ``REGISTRY_EXT_DEFAULTS['k2hdkc']`` names.

Trove hands each guest ``datastore_registry_ext = k2hdkc:<registry_ext>``.
K2HDKC guests run the Rust trove-guestagent, which does not read it; Trove's
Python guest agent would import this class, which stops with a clear message
instead of an import error.
"""


class Manager(object):
    """Not a guest manager: K2HDKC guests run the Rust trove-guestagent."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            "the k2hdkc datastore is served by the trove-guestagent-k2hdkc package "
            "(the Rust trove-guestagent), not by Trove's Python guest agent")
