"""Horizon for the Dashboard test: Horizon's own WSGI application, with its
static files (collected and compressed into STATIC_ROOT) served by
Django's static handler, where a production site puts a web server."""

from django.contrib.staticfiles.handlers import StaticFilesHandler

from openstack_dashboard.wsgi import application as horizon

application = StaticFilesHandler(horizon)
