"""The pysaml2 IdP configuration (settings.SAML_IDP_CONFIG) and the service
provider's metadata, from the launcher's options (see ../../common.py)."""
import os

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.saml import (
    NAME_FORMAT_URI,
    NAMEID_FORMAT_EMAILADDRESS,
    NAMEID_FORMAT_PERSISTENT,
    NAMEID_FORMAT_UNSPECIFIED,
)


def entity_id(opts, base):
    return opts.get("entity_id") or f"{base}/idp/metadata/"


def validate_authnrequest(opts):
    v = opts.get("validate_authnrequest")
    return bool(opts.get("sp_cert")) if v is None else bool(v)


def idp_config(opts, base, data):
    cert = os.path.join(data, "idp.crt")
    key = os.path.join(data, "idp.key")
    return {
        "debug": False,
        "xmlsec_binary": os.environ.get("AUTHPULSE_TEST_XMLSEC1", "/usr/bin/xmlsec1"),
        "entityid": entity_id(opts, base),
        "description": "authpulse test IdP (djangosaml2idp)",
        "service": {
            "idp": {
                "name": "authpulse test IdP (djangosaml2idp)",
                "endpoints": {
                    "single_sign_on_service": [
                        (f"{base}/idp/sso/redirect/", BINDING_HTTP_REDIRECT),
                        (f"{base}/idp/sso/post/", BINDING_HTTP_POST),
                    ],
                    "single_logout_service": [
                        (f"{base}/idp/slo/redirect/", BINDING_HTTP_REDIRECT),
                        (f"{base}/idp/slo/post/", BINDING_HTTP_POST),
                    ],
                },
                "name_id_format": [
                    NAMEID_FORMAT_UNSPECIFIED,
                    NAMEID_FORMAT_EMAILADDRESS,
                    NAMEID_FORMAT_PERSISTENT,
                ],
                "want_authn_requests_signed": validate_authnrequest(opts),
                "policy": {
                    "default": {
                        "lifetime": {"minutes": 5},
                        "attribute_restrictions": None,
                        "name_form": NAME_FORMAT_URI,
                    },
                },
            },
        },
        "key_file": key,
        "cert_file": cert,
        "encryption_keypairs": [{"key_file": key, "cert_file": cert}],
        "valid_for": 24 * 365,
        "organization": {
            "name": [("authpulse tests", "en")],
            "display_name": [("authpulse tests", "en")],
            "url": [(base, "en")],
        },
        "contact_person": [
            {
                "contact_type": "technical",
                "given_name": "authpulse tests",
                "email_address": "saml-peer@example.test",
            }
        ],
    }


def sp_metadata(opts):
    """SAML metadata of the one service provider (djangosaml2idp keeps it in
    its ServiceProvider table), valid for a year."""
    import datetime

    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    keys = ""
    if opts.get("sp_cert"):
        body = "".join(
            ln.strip()
            for ln in opts["sp_cert"].strip().splitlines()
            if ln.strip() and not ln.startswith("-----")
        )
        for use in ("signing", "encryption"):
            keys += (
                f'<md:KeyDescriptor use="{use}"><ds:KeyInfo><ds:X509Data>'
                f"<ds:X509Certificate>{body}</ds:X509Certificate>"
                "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            )
    signed = "true" if validate_authnrequest(opts) else "false"
    from xml.sax.saxutils import quoteattr

    return (
        '<?xml version="1.0"?>\n'
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
        f'entityID={quoteattr(opts["sp_entity_id"])} validUntil="{until}">'
        f'<md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="false" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{keys}"
        f"<md:NameIDFormat>{NAMEID_FORMAT_UNSPECIFIED}</md:NameIDFormat>"
        '<md:AssertionConsumerService index="0" isDefault="true" '
        'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        f'Location={quoteattr(opts["acs_url"])}/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>\n"
    )
