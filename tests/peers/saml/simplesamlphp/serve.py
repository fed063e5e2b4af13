"""authpulse test peer: SimpleSAMLphp (Debian's package, unmodified) as a
SAML 2.0 identity provider on 127.0.0.1 only, served by PHP's built-in web
server.

    python3 serve.py [options]        (see ../common.py for the options)

It writes a private SimpleSAMLphp configuration into a temporary directory
(config.php, authsources.php, metadata/saml20-idp-hosted.php,
metadata/saml20-sp-remote.php, the signing cert and key, a PHP session
store) and points SimpleSAMLphp at it with SIMPLESAMLPHP_CONFIG_DIR, so
nothing under /etc or /usr is read for configuration or changed. PHP reads
the configuration on every request: rewriting these files (or sending a
JSON line on stdin, see ../common.py) changes the running IdP.

Users: alice/alice-pw and bob/bob-pw (exampleauth:UserPass). Endpoints:
    <base>/saml2/idp/metadata.php              metadata (also the default entity id)
    <base>/saml2/idp/SSOService.php            SSO, HTTP-Redirect and HTTP-POST
    <base>/saml2/idp/SSOService.php?spentityid=<sp>   IdP-initiated SSO
    <base>/module.php/core/loginuserpass.php   the login form (username, password)

Env: AUTHPULSE_TEST_PHP (default `php`), AUTHPULSE_TEST_SSP_DIR (default
/usr/share/simplesamlphp).
"""

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

SSP = os.environ.get("AUTHPULSE_TEST_SSP_DIR", "/usr/share/simplesamlphp")
PHP = os.environ.get("AUTHPULSE_TEST_PHP", "php")


def php(value, indent=""):
    """A PHP literal for a Python value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    inner = indent + "    "
    if isinstance(value, dict):
        items = [f"{inner}{php(k)} => {php(v, inner)},\n" for k, v in value.items()]
    else:
        items = [f"{inner}{php(v, inner)},\n" for v in value]
    return "[\n" + "".join(items) + indent + "]"


def php_file(var, key, value):
    target = f"${var}" if key is None else f"${var}[{php(key)}]"
    return f"<?php\n// Written by tests/peers/saml/simplesamlphp/serve.py.\n{target} = {php(value)};\n"


class Config:
    """The private configuration directory and what goes into it."""

    def __init__(self, opts):
        self.opts = opts
        self.dir = tempfile.mkdtemp(prefix="authpulse-ssp-")
        for sub in ("metadata", "cert", "sessions", "data", "tmp", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        self.salt = secrets.token_hex(32)
        self.admin_pw = secrets.token_hex(16)
        self.port = None
        self.lock = threading.Lock()

    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def entity_id(self):
        return self.opts.get("entity_id") or f"{self.base()}/saml2/idp/metadata.php"

    def write(self):
        with self.lock:
            self._write()

    def _write(self):
        d, o = self.dir, self.opts
        j = os.path.join
        common.write_atomic(j(d, "cert", "idp.crt"), o["idp_cert"], 0o644)
        common.write_atomic(j(d, "cert", "idp.key"), o["idp_key"])
        common.write_atomic(
            j(d, "config.php"),
            php_file("config", None, {
                "baseurlpath": f"{self.base()}/",
                "certdir": j(d, "cert") + "/",
                "loggingdir": j(d, "log") + "/",
                "datadir": j(d, "data") + "/",
                "tempdir": j(d, "tmp"),
                "metadatadir": j(d, "metadata") + "/",
                "metadata.sources": [{"type": "flatfile"}],
                "secretsalt": self.salt,
                "auth.adminpassword": self.admin_pw,
                "admin.protectindexpage": False,
                "admin.protectmetadata": False,
                "technicalcontact_name": "authpulse tests",
                "technicalcontact_email": "saml-peer@example.test",
                "timezone": "UTC",
                "logging.handler": "stderr",
                "logging.level": 6,  # SimpleSAML\Logger::INFO
                "showerrors": True,
                "errorreporting": False,
                "enable.saml20-idp": True,
                "module.enable": {"exampleauth": True, "core": True, "saml": True},
                "store.type": "phpsession",
                "session.phpsession.savepath": j(d, "sessions"),
                "session.phpsession.cookiename": "SimpleSAML",
                "session.cookie.secure": False,
                "session.cookie.samesite": None,
                "language.cookie.secure": False,
            }),
        )
        users = {
            f"{name}:{pw}": attrs for name, (pw, attrs) in common.USERS.items()
        }
        common.write_atomic(
            j(d, "authsources.php"),
            php_file("config", None, {
                "admin": ["core:AdminPassword"],
                "example-userpass": {0: "exampleauth:UserPass", **users},
            }),
        )
        idp = {
            "host": "__DEFAULT__",
            "privatekey": j(d, "cert", "idp.key"),
            "certificate": j(d, "cert", "idp.crt"),
            "auth": "example-userpass",
            "signature.algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            # Both request bindings in the metadata (SSOService.php serves both).
            "SingleSignOnServiceBinding": [
                "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
                "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
            ],
            # NameID: transient unless the SP asks otherwise; these give the
            # other common formats a value.
            "authproc": {
                10: {"class": "saml:AttributeNameID", "attribute": "uid",
                     "Format": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"},
                11: {"class": "saml:AttributeNameID", "attribute": "mail",
                     "Format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"},
                12: {"class": "saml:PersistentNameID", "attribute": "uid"},
            },
        }
        for flag, key in (("sign_response", "saml20.sign.response"),
                          ("sign_assertion", "saml20.sign.assertion")):
            if o.get(flag) is not None:
                idp[key] = bool(o[flag])
        common.write_atomic(
            j(d, "metadata", "saml20-idp-hosted.php"),
            php_file("metadata", self.entity_id(), idp),
        )
        sp = {
            "AssertionConsumerService": [{
                "Binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
                "Location": o["acs_url"],
            }],
            "validate.authnrequest": common.validate_authnrequest(o),
            "assertion.encryption": bool(o.get("encrypt_assertion")),
        }
        if o.get("sp_cert"):
            sp["certData"] = common.cert_body(o["sp_cert"])
        common.write_atomic(
            j(d, "metadata", "saml20-sp-remote.php"),
            php_file("metadata", o["sp_entity_id"], sp),
        )

    def reconfigure(self, update):
        with self.lock:
            merged = dict(self.opts)
            merged.update(update)
            if bool(merged.get("idp_cert")) != bool(merged.get("idp_key")):
                raise ValueError("idp_cert and idp_key go together")
            self.opts = merged
            self._write()


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def parent_death():
    """In the child before exec: SIGTERM it when the launcher dies, even by
    SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def start_php(conf):
    """Starts php -S on a free port (retrying when the port was taken
    meanwhile) and waits until the IdP's metadata answers."""
    env = dict(os.environ, SIMPLESAMLPHP_CONFIG_DIR=conf.dir)
    # One process, no PHP_CLI_SERVER_WORKERS: forked workers outlive a killed
    # master, while this one process dies with the launcher (parent_death).
    env.pop("PHP_CLI_SERVER_WORKERS", None)
    for _attempt in range(5):
        conf.port = common.free_port()
        conf.write()
        proc = subprocess.Popen(
            [PHP, "-d", "display_errors=0", "-d", "log_errors=1",
             "-d", "error_reporting=E_ALL & ~E_DEPRECATED & ~E_STRICT",
             "-d", "opcache.enable_cli=0",
             "-S", f"127.0.0.1:{conf.port}", "-t", os.path.join(SSP, "www")],
            env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
            start_new_session=True,
            preexec_fn=parent_death,
        )
        deadline = time.monotonic() + 30
        url = f"{conf.base()}/saml2/idp/metadata.php"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break  # most likely the port was taken: try another
            status = answers(url)
            if status == 200:
                return proc
            if status is not None:
                stop_php(proc)
                raise SystemExit(f"SimpleSAMLphp answered {status} for {url}")
            time.sleep(0.05)
        else:
            stop_php(proc)
            raise SystemExit("SimpleSAMLphp did not answer within 30 s")
        common.log(f"php exited ({proc.returncode}) on port {conf.port}; retrying")
    raise SystemExit("php -S did not start (5 attempts)")


def stop_php(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    out = common.Stdout(sys.stdout)
    sys.stdout = sys.stderr
    opts = common.options(args)
    conf = Config(opts)
    done = threading.Event()
    proc = None
    try:
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.signal(signal.SIGINT, lambda *_: done.set())
        proc = start_php(conf)
        out.line(f"listening on {conf.base()}")
        out.line(f"config dir {conf.dir}")
        common.watch_stdin(out, conf.reconfigure, done.set)
        while not done.wait(0.5):
            if proc.poll() is not None:
                common.log(f"php exited ({proc.returncode})")
                break
    finally:
        if proc is not None:
            stop_php(proc)
        shutil.rmtree(conf.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
