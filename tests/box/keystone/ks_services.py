"""Register services, endpoints and service users in the box Keystone.

Run by keystone.sh (ks_services, ks_service, ks_service_user):

    python ks_services.py FILE|-

FILE (or standard input for "-") is JSON:

    {"services": [{"name": "nova", "type": "compute",
                   "url": "http://127.0.0.1:8774/v2.1"}, ...],
     "service_users": ["trove", ...]}

(both keys optional). The environment names the Keystone: KS_URL
(http://127.0.0.1:PORT/v3), KS_WORK (ks_start's WORK: the admin password is
read from WORK/admin-password, a service user's from WORK/NAME-password) and
KS_REGION (default RegionOne).

One process, Keystone's v3 REST API, one admin token (project admin), the
same requests the openstack CLI sends for what keystone.sh did before with
it (service create, endpoint create/set, project create --or-show, user
create --or-show / set --password, role add), so the records are the same:

  - a service NAME of TYPE (made if missing) with public, internal and admin
    endpoints in the region (each made if missing; one with another URL is
    set to URL);
  - project "service" in domain Default (made if missing); user NAME there
    (default project "service", made if missing), roles admin and service on
    project "service"; its password is WORK/NAME-password (32 random
    characters, made 0600 if missing, else reused). A user that exists but
    whose password does not open a token gets the file's password (as `user
    set --password` did).

Then it checks what it made: the region's endpoint list has the three
endpoints of each service with its URL, the role assignments of each user on
"service" include admin and service, and each user's password opens a token
scoped to "service". Passwords go only into request bodies and 0600 files,
never to the output. Prints nothing on success; on failure, what failed
(stderr) and exit status 1. Every request is bounded (30 s). Standard
library only.
"""

import json
import os
import re
import secrets
import string
import sys
import urllib.error
import urllib.parse
import urllib.request

NAME = re.compile(r'^[A-Za-z0-9_.-]+$')
INTERFACES = ('public', 'internal', 'admin')
# No proxy: the Keystone is on 127.0.0.1, and a proxy of the environment
# would see the tokens.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Failed(Exception):
    pass


class Keystone:
    def __init__(self, url):
        self.url = url.rstrip('/')
        self.token = None

    def call(self, method, path, body=None, token=True, ok=(200, 201, 204)):
        """(status, parsed body or None, headers); raises Failed unless ok."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header('Accept', 'application/json')
        req.add_header('User-Agent', 'k2hdkc-box-ks_services')
        if data is not None:
            req.add_header('Content-Type', 'application/json')
        if token:
            req.add_header('X-Auth-Token', self.token)
        try:
            with OPENER.open(req, timeout=30) as resp:
                status, raw, headers = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            status, raw, headers = e.code, e.read(), e.headers
        except (urllib.error.URLError, OSError) as e:
            raise Failed(f'{method} {path}: {e}') from None
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        if status not in ok:
            # Keystone's error bodies carry no request data (no password).
            msg = (doc or {}).get('error', {}).get('message') if isinstance(doc, dict) else None
            raise Failed(f'{method} {path}: HTTP {status}'
                         + (f': {msg}' if msg else ''))
        return status, doc, headers

    def get(self, path, **query):
        if query:
            path += '?' + urllib.parse.urlencode(query)
        return self.call('GET', path)[1]

    def password_token(self, user, password, project):
        """The token of USER/PASSWORD scoped to PROJECT (domain Default), or None on 401."""
        body = {'auth': {
            'identity': {'methods': ['password'], 'password': {'user': {
                'name': user, 'domain': {'id': 'default'}, 'password': password}}},
            'scope': {'project': {'name': project, 'domain': {'id': 'default'}}}}}
        # nocatalog: the token is all that is used here, and keystone
        # builds the catalog of the response otherwise.
        status, _, headers = self.call('POST', '/auth/tokens?nocatalog', body,
                                       token=False, ok=(201, 401))
        return headers.get('X-Subject-Token') if status == 201 else None


def secret_file(path):
    """The password in PATH; makes PATH (0600, 32 random [A-Za-z0-9]) if missing or empty."""
    try:
        with open(path) as f:
            pw = f.read().strip()
        if pw:
            return pw
    except FileNotFoundError:
        pass
    alphabet = string.ascii_letters + string.digits
    pw = ''.join(secrets.choice(alphabet) for _ in range(32))
    tmp = f'{path}.tmp{os.getpid()}'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        f.write(pw)
    os.replace(tmp, path)
    return pw


def ensure_services(ks, services, region):
    existing = ks.get('/services')['services']
    endpoints = ks.get('/endpoints', region_id=region)['endpoints']
    for s in services:
        name, stype, url = s['name'], s['type'], s['url']
        same = [x for x in existing if x.get('name') == name and x.get('type') == stype]
        if same:
            sid = same[0]['id']
        else:
            # openstack service create --name NAME TYPE
            sid = ks.call('POST', '/services', {'service': {
                'name': name, 'description': None, 'type': stype,
                'enabled': True}})[1]['service']['id']
        for iface in INTERFACES:
            eps = [e for e in endpoints
                   if e['service_id'] == sid and e['interface'] == iface]
            if not eps:
                # openstack endpoint create --region REGION SERVICE IFACE URL
                ks.call('POST', '/endpoints', {'endpoint': {
                    'service_id': sid, 'url': url, 'region_id': region,
                    'enabled': True, 'interface': iface}})
            elif eps[0]['url'] != url:
                # openstack endpoint set --url URL ID
                ks.call('PATCH', f"/endpoints/{eps[0]['id']}",
                        {'endpoint': {'url': url}})


def check_services(ks, services, region):
    endpoints = ks.get('/endpoints', region_id=region)['endpoints']
    existing = {x['id']: x for x in ks.get('/services')['services']}
    for s in services:
        got = {e['interface'] for e in endpoints
               if e['url'] == s['url'] and e['enabled']
               and existing.get(e['service_id'], {}).get('name') == s['name']
               and existing.get(e['service_id'], {}).get('type') == s['type']}
        if not got >= set(INTERFACES):
            raise Failed(f"service {s['name']} ({s['type']}): endpoints "
                         f"{sorted(set(INTERFACES) - got)} with {s['url']} missing in {region}")


def ensure_users(ks, users, work):
    if not users:
        return
    # openstack project create --domain default --or-show service
    projects = ks.get('/projects', name='service', domain_id='default')['projects']
    if projects:
        project_id = projects[0]['id']
    else:
        project_id = ks.call('POST', '/projects', {'project': {
            'domain_id': 'default', 'name': 'service',
            'enabled': True}})[1]['project']['id']
    all_roles = ks.get('/roles')['roles']
    roles = {}
    for role in ('admin', 'service'):
        found = [r for r in all_roles if r['name'] == role and r.get('domain_id') is None]
        if not found:
            raise Failed(f'role {role} missing (keystone-manage bootstrap makes it)')
        roles[role] = found[0]['id']

    for name in users:
        password = secret_file(os.path.join(work, f'{name}-password'))
        found = ks.get('/users', name=name, domain_id='default')['users']
        if found:
            user_id, made = found[0]['id'], False
        else:
            # openstack user create --domain default --project service --password ... NAME
            user_id, made = ks.call('POST', '/users', {'user': {
                'domain_id': 'default', 'name': name,
                'default_project_id': project_id, 'password': password,
                'enabled': True}})[1]['user']['id'], True
        for role, role_id in roles.items():
            # openstack role add --project service --user NAME ROLE
            ks.call('PUT', f'/projects/{project_id}/users/{user_id}/roles/{role_id}')

        assigned = ks.get('/role_assignments', **{
            'user.id': user_id, 'scope.project.id': project_id,
            'include_names': 'True'})['role_assignments']
        names = {a['role'].get('name') for a in assigned}
        if not {'admin', 'service'} <= names:
            raise Failed(f'user {name}: roles admin and service on project service '
                         f'not assigned (has {sorted(n for n in names if n)})')
        # The password really opens a token scoped to project service; an
        # older user with another password gets the file's one (user set
        # --password).
        if ks.password_token(name, password, 'service'):
            continue
        if made:
            raise Failed(f'user {name}: its new password opens no token')
        ks.call('PATCH', f'/users/{user_id}', {'user': {'password': password}})
        if not ks.password_token(name, password, 'service'):
            raise Failed(f'user {name}: no token with the password of '
                         f'{name}-password after setting it')


def load(arg):
    try:
        text = sys.stdin.read() if arg == '-' else open(arg).read()
        doc = json.loads(text)
    except (OSError, ValueError) as e:
        raise Failed(f'cannot read {arg}: {e}') from None
    if not isinstance(doc, dict) or set(doc) - {'services', 'service_users'}:
        raise Failed(f'{arg}: want {{"services": [...], "service_users": [...]}}')
    services = doc.get('services') or []
    users = doc.get('service_users') or []
    for s in services:
        if (not isinstance(s, dict) or set(s) != {'name', 'type', 'url'}
                or not all(isinstance(v, str) for v in s.values())
                or not NAME.match(s['name']) or not NAME.match(s['type'])
                or not s['url'] or any(c.isspace() for c in s['url'])):
            raise Failed(f'{arg}: bad service {s!r} (want name, type: '
                         '[A-Za-z0-9_.-]; url: no spaces)')
    for u in users:
        if not isinstance(u, str) or not NAME.match(u):
            raise Failed(f'{arg}: bad service user {u!r} (want [A-Za-z0-9_.-])')
    return services, users


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: ks_services.py FILE|-')
    url, work = os.environ.get('KS_URL'), os.environ.get('KS_WORK')
    region = os.environ.get('KS_REGION') or 'RegionOne'
    if not url or not work:
        sys.exit('ks_services.py: KS_URL and KS_WORK must be set')
    try:
        services, users = load(sys.argv[1])
        if not services and not users:
            return
        ks = Keystone(url)
        with open(os.path.join(work, 'admin-password')) as f:
            admin_password = f.read().strip()
        ks.token = ks.password_token('admin', admin_password, 'admin')
        admin_password = None
        if not ks.token:
            raise Failed('the admin password (WORK/admin-password) opens no token')
        ensure_services(ks, services, region)
        ensure_users(ks, users, work)
        if services:
            check_services(ks, services, region)
    except (Failed, OSError, KeyError, TypeError) as e:
        sys.exit(f'ks_services.py: {e}')


if __name__ == '__main__':
    main()
