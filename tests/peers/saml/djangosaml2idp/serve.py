"""authpulse test peer: djangosaml2idp (Django + pysaml2, unmodified) as a
SAML 2.0 identity provider on 127.0.0.1 only.

    target/saml-idp-venv/bin/python serve.py [options]   (see ../common.py)

Configured only as an operator would: samlidp/settings.py (SAML_IDP_CONFIG
from samlidp/config.py), samlidp/urls.py, Django's own LoginView as the
login page, and samlidp/setup.py, which creates the users alice/alice-pw and
bob/bob-pw (groups = eduPersonAffiliation) and the one ServiceProvider row.
pysaml2 signs and encrypts with the xmlsec1 command (AUTHPULSE_TEST_XMLSEC1,
default /usr/bin/xmlsec1).

Endpoints:
    <base>/idp/metadata/              metadata (also the default entity id)
    <base>/idp/sso/redirect/          SSO, HTTP-Redirect binding
    <base>/idp/sso/post/              SSO, HTTP-POST binding
    <base>/idp/sso/init/?sp=<sp>      IdP-initiated SSO (with --idp-initiated)
    <base>/login/?next=...            the login form (username, password)

The migrated database (with the users) is made once per settings/version
and copied on every start, so a start takes well under a second once warm.
"""

import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import common  # noqa: E402


class Server(WSGIServer):
    """One request at a time, like tests/peers/django/serve.py."""


class QuietHandler(WSGIRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def write_files(data, opts):
    common.write_atomic(os.path.join(data, "idp.crt"), opts["idp_cert"], 0o644)
    common.write_atomic(os.path.join(data, "idp.key"), opts["idp_key"])
    common.write_atomic(os.path.join(data, "options.json"), json.dumps(opts, indent=1))


def template_db():
    """A migrated SQLite database with the users, made once for these
    settings and package versions and kept in the temp dir."""
    from importlib.metadata import version

    h = hashlib.sha256()
    for name in ("settings.py", "setup.py"):
        with open(os.path.join(HERE, "samlidp", name), "rb") as f:
            h.update(f.read())
    with open(os.path.join(HERE, "..", "common.py"), "rb") as f:
        h.update(f.read())
    for pkg in ("Django", "djangosaml2idp", "pysaml2"):
        h.update(f"{pkg}={version(pkg)};".encode())
    h.update(sys.version.encode())
    return os.path.join(
        tempfile.gettempdir(), f"authpulse-djangosaml2idp-{h.hexdigest()[:16]}.sqlite3"
    )


def prepare_db(data):
    """Copies the template database into DATA, making it first if need be."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    target = settings.DATABASES["default"]["NAME"]
    template = template_db()
    if not os.path.exists(template):
        t = time.monotonic()
        call_command("migrate", verbosity=0, interactive=False)
        from samlidp import setup

        setup.users()
        connections.close_all()
        tmp = f"{template}.{os.getpid()}"
        shutil.copyfile(target, tmp)
        os.replace(tmp, template)
        common.log(f"template database {template} made in {time.monotonic() - t:.1f}s")
    else:
        shutil.copyfile(template, target)


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    out = common.Stdout(sys.stdout)
    # stdout is the harness's channel: Django's chatter goes to stderr.
    sys.stdout = sys.stderr
    opts = common.options(args)
    data = tempfile.mkdtemp(prefix="authpulse-djangosaml2idp-")
    sp_file = None
    try:
        # The port is bound first: the configuration names it.
        server = make_server("127.0.0.1", 0, None, Server, QuietHandler)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        os.environ["AUTHPULSE_SAML_DATA"] = data
        os.environ["AUTHPULSE_SAML_BASE"] = base
        os.environ["DJANGO_SETTINGS_MODULE"] = "samlidp.settings"
        write_files(data, opts)

        import django
        from django.conf import settings

        django.setup()
        prepare_db(data)

        from django.core.wsgi import get_wsgi_application
        from django.db import connections

        from samlidp import config, setup

        state = {"opts": opts, "sp_id": setup.service_provider(opts)}
        sp_file = f"/tmp/djangosaml2idp/{state['sp_id']}.xml"
        connections.close_all()
        app = get_wsgi_application()
        lock = threading.Lock()

        def locked(environ, start_response):
            with lock:
                return app(environ, start_response)

        server.set_app(locked)

        def reconfigure(update):
            with lock:
                merged = dict(state["opts"])
                merged.update(update)
                write_files(data, merged)
                settings.OPTIONS.clear()
                settings.OPTIONS.update(merged)
                settings.SAML_IDP_CONFIG = config.idp_config(merged, base, data)
                try:
                    os.remove(sp_file)
                except FileNotFoundError:
                    pass
                try:
                    # Saving the row also reloads the pysaml2 server.
                    setup.service_provider(merged, state["sp_id"])
                finally:
                    connections.close_all()
                state["opts"] = merged

        def stop(*_):
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        out.line(f"listening on {base}")
        out.line(f"config dir {data}")
        common.watch_stdin(out, reconfigure, stop)
        server.serve_forever()
    finally:
        shutil.rmtree(data, ignore_errors=True)
        if sp_file:
            try:
                os.remove(sp_file)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    main()
