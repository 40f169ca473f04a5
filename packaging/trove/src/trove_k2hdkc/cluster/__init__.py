"""The k2hdkc cluster strategies, laid out as Trove's own
(``trove/common/strategies/cluster/experimental/<datastore>/``):

- :mod:`.api` (trove-api): the request checks and the cluster model,
  ``[k2hdkc] api_strategy``;
- :mod:`.taskmanager` (trove-taskmanager): the ring steps in the order
  that keeps every key, with bounded waits and the statuses a failure
  leaves, ``[k2hdkc] taskmanager_strategy``;
- :mod:`.guestagent`: the guest RPC client with one method per ring step,
  ``[k2hdkc] guestagent_strategy``.

The ring logic itself (chmpx control commands, merge watching) lives in
the Rust agent; these modules only decide which member does what, when.
Trove imports them through the three options; nothing here is imported at
interpreter start.
"""
