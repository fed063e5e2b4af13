"""What the SAML identity provider launchers (simplesamlphp/serve.py,
djangosaml2idp/serve.py) share: their options, the test users, free ports,
a throwaway signing certificate, and the stdin protocol.

Standard library only: it runs under the system python3 (SimpleSAMLphp) and
under target/saml-idp-venv's (djangosaml2idp).

Options come from `--options FILE.json` (keys as below, `-` or `_`), then
from the command line, which wins:

    --idp-cert PEM --idp-key PEM   IdP signing certificate and key (RSA).
                                   A path, or in JSON also the PEM text.
                                   Without them a fresh self-signed pair is
                                   made with the openssl command.
    --entity-id ID                 IdP entity id (default: each IdP's own,
                                   derived from its base URL)
    --sp-entity-id ID              the one service provider the IdP knows
                                   (default https://probe.invalid/saml/sp)
    --acs-url URL                  its HTTP-POST assertion consumer service
                                   (default https://probe.invalid/saml/acs)
    --sp-cert PEM                  the SP's certificate: signed AuthnRequests
                                   are then required (see
                                   --[no-]validate-authnrequest) and
                                   --encrypt-assertion encrypts to it
    --[no-]sign-response           sign the <samlp:Response>
    --[no-]sign-assertion          sign the <saml:Assertion>
                                   (each left to the IdP's default if unset)
    --idp-initiated                allow IdP-initiated SSO

Protocol: stdout carries exactly two lines,
    listening on http://127.0.0.1:<port>
    config dir <dir>
and then one line per reconfiguration. Each stdin line is a JSON object of
options to change while running (e.g. {"idp_cert": PEM, "idp_key": PEM} or
{"entity_id": "..."}), answered on stdout by `reconfigured` or `error: ...`.
EOF on stdin (the parent died or closed it) or SIGTERM stops the IdP.
Everything else goes to stderr.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

DEFAULT_SP_ENTITY_ID = "https://probe.invalid/saml/sp"
DEFAULT_ACS_URL = "https://probe.invalid/saml/acs"

# username -> (password, attributes); every value is a list.
USERS = {
    "alice": (
        "alice-pw",
        {
            "uid": ["alice"],
            "mail": ["alice@example.test"],
            "eduPersonAffiliation": ["member", "staff"],
            "displayName": ["Alice Example"],
        },
    ),
    "bob": (
        "bob-pw",
        {
            "uid": ["bob"],
            "mail": ["bob@example.test"],
            "eduPersonAffiliation": ["member"],
            "displayName": ["Bob Example"],
        },
    ),
}

OPTION_KEYS = (
    "idp_cert",
    "idp_key",
    "entity_id",
    "sp_entity_id",
    "acs_url",
    "sp_cert",
    "encrypt_assertion",
    "validate_authnrequest",
    "sign_response",
    "sign_assertion",
    "idp_initiated",
)


def log(msg):
    sys.stderr.write(f"{msg}\n")
    sys.stderr.flush()


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--options", help="JSON file of options (keys as the flags)")
    p.add_argument("--idp-cert")
    p.add_argument("--idp-key")
    p.add_argument("--entity-id")
    p.add_argument("--sp-entity-id")
    p.add_argument("--acs-url")
    p.add_argument("--sp-cert")
    p.add_argument("--encrypt-assertion", action="store_true", default=None)
    p.add_argument(
        "--validate-authnrequest", action=argparse.BooleanOptionalAction
    )
    p.add_argument("--sign-response", action=argparse.BooleanOptionalAction)
    p.add_argument("--sign-assertion", action=argparse.BooleanOptionalAction)
    p.add_argument("--idp-initiated", action="store_true", default=None)
    return p


def pem(value):
    """PEM text from a path or from PEM text."""
    if value is None:
        return None
    if value.lstrip().startswith("-----BEGIN"):
        return value
    with open(value, encoding="ascii") as f:
        return f.read()


def normalize(raw):
    """Options from a JSON object: known keys only, `-` read as `_`, PEMs loaded."""
    out = {}
    for key, value in raw.items():
        key = key.replace("-", "_")
        if key not in OPTION_KEYS:
            raise ValueError(f"unknown option {key!r}")
        if key in ("idp_cert", "idp_key", "sp_cert"):
            value = pem(value)
        out[key] = value
    return out


def options(args):
    """Merged options: defaults < --options file < command line."""
    opts = {
        "sp_entity_id": DEFAULT_SP_ENTITY_ID,
        "acs_url": DEFAULT_ACS_URL,
        "encrypt_assertion": False,
        "idp_initiated": False,
    }
    if args.options:
        with open(args.options, encoding="utf-8") as f:
            opts.update(normalize(json.load(f)))
    cli = {k: getattr(args, k) for k in OPTION_KEYS if getattr(args, k) is not None}
    opts.update(normalize(cli))
    if not opts.get("idp_cert") or not opts.get("idp_key"):
        opts["idp_cert"], opts["idp_key"] = self_signed("authpulse test IdP")
    if opts.get("encrypt_assertion") and not opts.get("sp_cert"):
        raise SystemExit("--encrypt-assertion needs --sp-cert")
    return opts


def validate_authnrequest(opts):
    """Signed AuthnRequests required: by default when an SP cert is known."""
    v = opts.get("validate_authnrequest")
    return bool(opts.get("sp_cert")) if v is None else bool(v)


def self_signed(cn):
    """(cert PEM, key PEM): RSA 2048, one year, made by the openssl command."""
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", key, "-out", cert, "-days", "365", "-subj", f"/CN={cn}"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        with open(cert, encoding="ascii") as c, open(key, encoding="ascii") as k:
            return c.read(), k.read()


def cert_body(cert_pem):
    """The base64 body of a PEM certificate, on one line."""
    lines = [ln.strip() for ln in cert_pem.strip().splitlines()]
    return "".join(ln for ln in lines if ln and not ln.startswith("-----"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_atomic(path, text, mode=0o600):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class Stdout:
    """The harness's channel: whole lines, flushed, one writer at a time."""

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()

    def line(self, text):
        with self.lock:
            self.stream.write(text + "\n")
            self.stream.flush()


def watch_stdin(out, reconfigure, stop):
    """Reads JSON option updates from stdin until EOF, then calls stop()."""

    def run():
        try:
            for raw in sys.stdin:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    reconfigure(normalize(json.loads(raw)))
                    out.line("reconfigured")
                except Exception as e:  # reported to the harness, not fatal
                    log(f"reconfigure failed: {e!r}")
                    out.line(f"error: {e}")
        except (OSError, ValueError):
            pass
        stop()

    threading.Thread(target=run, daemon=True).start()
