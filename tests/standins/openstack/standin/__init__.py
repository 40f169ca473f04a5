"""OpenStack STAND-IN for tests: NOT Nova, Cinder, Neutron or Glance.

The parts of openstack_standin.py (the entry point next to this package),
one module per concern, Python 3 standard library only:

  http.py         the server: one port, dispatch by path prefix to the
                  four APIs, JSON replies, request log, the catalog
  api.py          what each API is built from: request, errors, routes,
                  the 401 answer, query and microversion parsing, the
                  Service base class
  nova.py         Compute API v2.1 (/compute/v2.1) and the server life
                  (build, reboot, delete)
  cinder.py       Block Storage API v3 (/volume/v3)
  neutron.py      Networking API v2.0 (/network/v2.0)
  glance.py       Image API v2 (/image/v2)
  state.py        the store, its JSON snapshot, the seeded resources
  guestdir.py     the guest directory handed to the HYPERVISOR
  hypervisor.py   running the HYPERVISOR command
  cloudinit.py    the cloud-config write_files of a server's user_data
  yaml_subset.py  the YAML reader cloudinit.py uses
  common.py       ids, timestamps, the stderr log

Each API module names the API reference it follows. Production must never
point at it.
"""
