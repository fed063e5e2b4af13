"""authpulse test peer: a real Django identity provider on 127.0.0.1 only.

    python serve.py dop|allauth_idp [--dir DIR]

`dop` is django-oidc-provider with django-two-factor-auth as its login;
`allauth_idp` is django-allauth's OpenID provider (allauth.idp.oidc) with
allauth.mfa. Each is configured only through its settings.py/urls.py and a
setup.py that creates the test users and the client, as an operator would.

It migrates a fresh SQLite database in DIR (a temporary directory by
default), creates the users and the client, serves the WSGI application on a
free port and prints exactly one line to stdout:
    listening on http://127.0.0.1:<port>
Everything else goes to stderr. It exits when stdin reaches EOF (its parent
died or closed it) or on SIGTERM, removing the data directory it made.
"""

import argparse
import importlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

HERE = os.path.dirname(os.path.abspath(__file__))


class Server(WSGIServer):
    """One request at a time: SQLite and the tests need no more, and
    concurrent writers would only meet SQLite's lock."""


class QuietHandler(WSGIRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["dop", "allauth_idp"])
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    data = args.dir or tempfile.mkdtemp(prefix=f"authpulse-{args.app}-")
    os.environ["AUTHPULSE_IDP_DATA"] = data
    os.environ["DJANGO_SETTINGS_MODULE"] = f"{args.app}.settings"
    sys.path.insert(0, HERE)
    # stdout is the harness's channel: Django's chatter goes to stderr.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    importlib.import_module(f"{args.app}.setup").run()

    from django.core.wsgi import get_wsgi_application

    server = make_server(
        "127.0.0.1", 0, get_wsgi_application(), Server, QuietHandler
    )
    port = server.server_address[1]

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except OSError:
            pass
        stop()

    threading.Thread(target=watch_stdin, daemon=True).start()
    real_stdout.write(f"listening on http://127.0.0.1:{port}\n")
    real_stdout.flush()
    server.serve_forever()
    if not args.dir:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
