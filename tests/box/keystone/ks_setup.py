"""Initialise a Keystone: the keystone-manage steps, then the demo tenant.

Run by keystone.sh ks_start with the python of the Keystone venv:

    python ks_setup.py KEYSTONE_CONF PUBLIC_URL REGION

Secrets come from the environment, never the command line:
KS_ADMIN_PASSWORD (the bootstrap admin's) and KS_DEMO_PASSWORD.

It runs, in this one interpreter, exactly what these commands would:

    keystone-manage --config-file KEYSTONE_CONF fernet_setup
        --keystone-user U --keystone-group G
    keystone-manage ... credential_setup --keystone-user U --keystone-group G
    keystone-manage ... db_sync
    keystone-manage ... bootstrap --bootstrap-username admin
        --bootstrap-project-name admin --bootstrap-role-name admin
        --bootstrap-service-name keystone --bootstrap-region-id REGION
        --bootstrap-{public,internal,admin}-url PUBLIC_URL
        (password from OS_BOOTSTRAP_PASSWORD)

(keystone.cmd.cli.main is keystone-manage's entry point): importing
keystone takes about 3.5 s on this machine, so four processes would spend
14 s importing. Then, with the same Keystone managers bootstrap has just
loaded (as `keystone-manage bootstrap` itself creates its admin), it makes
project "demo" and user "demo" with roles "member" and "reader" on it.
Every step is idempotent (re-running on the same database changes nothing
but the demo password, which it sets to KS_DEMO_PASSWORD).

Prints one JSON line: admin_project_id, demo_project_id, demo_user_id.

Markers for the gunicorn worker started beside this script (keystone.sh's
gunicorn.conf.py): once the key repositories are made it makes the (empty)
file KS_KEYS_DONE names, if set (the worker builds its application then),
and at the end the one KS_SETUP_DONE names (the worker serves then).
"""

import grp
import json
import os
import pwd
import sys
import uuid


def touch(path):
    if path:
        open(path, 'w').close()


def manage(cli, conf, *args):
    try:
        cli.main(argv=['keystone-manage', '--config-file', conf, *args])
    except SystemExit as e:  # argparse errors and some commands exit
        if e.code not in (None, 0):
            raise RuntimeError(f'keystone-manage {args[0]} exited {e.code}')
    # oslo.config refuses to register keystone-manage's sub-command option
    # again once parsed: forget the parse (options and values) so the next
    # main() starts as a fresh keystone-manage would.
    cli.CONF.clear()


def ensure_demo(password):
    from keystone.common import provider_api
    from keystone import exception
    import keystone.conf

    providers = provider_api.ProviderAPIs
    domain_id = keystone.conf.CONF.identity.default_domain_id

    try:
        project = providers.resource_api.get_project_by_name('demo', domain_id)
    except exception.ProjectNotFound:
        project_id = uuid.uuid4().hex
        project = providers.resource_api.create_project(project_id, {
            'id': project_id, 'name': 'demo', 'domain_id': domain_id,
            'enabled': True, 'description': 'Tenant project of the box',
        })

    try:
        user = providers.identity_api.get_user_by_name('demo', domain_id)
        try:
            providers.identity_api.driver.authenticate(user['id'], password)
        except AssertionError:
            user = providers.identity_api.update_user(
                user['id'], {'password': password, 'enabled': True})
    except exception.UserNotFound:
        user = providers.identity_api.create_user(user_ref={
            'name': 'demo', 'domain_id': domain_id, 'enabled': True,
            'password': password, 'default_project_id': project['id'],
        })

    for role_name in ('member', 'reader'):
        role = [r for r in providers.role_api.list_roles()
                if r['name'] == role_name and r.get('domain_id') is None]
        if not role:
            raise RuntimeError(f'role {role_name} missing after bootstrap')
        try:
            providers.assignment_api.add_role_to_user_and_project(
                user_id=user['id'], project_id=project['id'],
                role_id=role[0]['id'])
        except exception.Conflict:
            pass
    return project['id'], user['id']


def main():
    conf, public_url, region = sys.argv[1:4]
    admin_password = os.environ.get('KS_ADMIN_PASSWORD', '')
    demo_password = os.environ.get('KS_DEMO_PASSWORD', '')
    if not admin_password or not demo_password:
        sys.exit('KS_ADMIN_PASSWORD and KS_DEMO_PASSWORD must be set')
    # bootstrap reads OS_BOOTSTRAP_* before its arguments: none may come
    # from the caller's environment but the password set here.
    for k in [k for k in os.environ if k.startswith('OS_BOOTSTRAP_')]:
        del os.environ[k]
    os.environ['OS_BOOTSTRAP_PASSWORD'] = admin_password

    from keystone.cmd import cli

    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    owner = ['--keystone-user', user, '--keystone-group', group]
    # The keys first: the gunicorn worker started beside this script builds
    # its application as soon as they exist (it reads no database then).
    manage(cli, conf, 'fernet_setup', *owner)
    manage(cli, conf, 'credential_setup', *owner)
    touch(os.environ.get('KS_KEYS_DONE'))
    manage(cli, conf, 'db_sync')
    # bootstrap's backends (the managers) stay loaded after it: the demo
    # tenant is made with them, so the configuration must stay parsed.
    cli.main(argv=[
        'keystone-manage', '--config-file', conf, 'bootstrap',
        '--bootstrap-username', 'admin',
        '--bootstrap-project-name', 'admin',
        '--bootstrap-role-name', 'admin',
        '--bootstrap-service-name', 'keystone',
        '--bootstrap-region-id', region,
        '--bootstrap-public-url', public_url,
        '--bootstrap-internal-url', public_url,
        '--bootstrap-admin-url', public_url,
    ])
    from keystone.common import provider_api
    admin_project = provider_api.ProviderAPIs.resource_api.get_project_by_name(
        'admin', cli.CONF.identity.default_domain_id)
    demo_project_id, demo_user_id = ensure_demo(demo_password)
    print(json.dumps({'admin_project_id': admin_project['id'],
                      'demo_project_id': demo_project_id,
                      'demo_user_id': demo_user_id}), flush=True)
    # Done: the gunicorn worker, waiting for this file, serves now.
    touch(os.environ.get('KS_SETUP_DONE'))


if __name__ == '__main__':
    main()
    # Done, and everything is committed and closed: leave without the
    # interpreter's teardown of keystone's modules and objects (about 1 s,
    # on ks_start's path). The log handlers are flushed first.
    import logging
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
