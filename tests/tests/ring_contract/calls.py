# What the Trove-side plugin sends for each k2hdkc ring step: its real
# K2hdkcGuestAgentAPI methods with the RPC call captured (method name and
# keyword arguments, as the guest receives them), printed as JSON. Run by
# tests/tests/ring_contract.rs under the venv that has trove and the plugin.
import json
from trove.common import cfg
cfg.CONF([], project="trove")
from trove_k2hdkc.cluster.guestagent import K2hdkcGuestAgentAPI
sent = []
api = K2hdkcGuestAgentAPI.__new__(K2hdkcGuestAgentAPI)
api.id = "member-1"
def _call(method_name, timeout_sec, version=None, **kwargs):
    sent.append({"method": method_name, "args": kwargs})
    return {}
api._call = _call
api.k2hdkc_ring_status()
api.k2hdkc_ring_converge(["cuk-a", "cuk-b"])
api.k2hdkc_ring_service_in()
api.k2hdkc_ring_service_out("cuk-b")
api.k2hdkc_ring_reattach()
api.k2hdkc_ring_merge()
print(json.dumps(sent))
