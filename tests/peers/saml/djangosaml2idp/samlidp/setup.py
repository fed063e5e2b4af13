"""The users (alice, bob) with their groups, and the service provider row."""
import json
import os
import secrets
import sys

from django.contrib.auth.models import Group, User

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import common  # noqa: E402


def users():
    for name, (password, attrs) in common.USERS.items():
        first, last = attrs["displayName"][0].split(" ", 1)
        user = User.objects.create_user(
            name, attrs["mail"][0], password, first_name=first, last_name=last
        )
        for group in attrs["eduPersonAffiliation"]:
            user.groups.add(Group.objects.get_or_create(name=group)[0])


def service_provider(opts, sp_id=None):
    """Creates or replaces the one ServiceProvider row. Its id names the file
    djangosaml2idp writes the SP metadata to (/tmp/djangosaml2idp/<id>.xml,
    shared by every instance on the machine): a random id keeps concurrent
    IdPs apart. Returns the id."""
    from djangosaml2idp.models import ServiceProvider

    from samlidp.config import sp_metadata

    ServiceProvider.objects.exclude(id=sp_id).delete()
    sp = ServiceProvider.objects.filter(id=sp_id).first() if sp_id else None
    if sp is None:
        sp = ServiceProvider(id=secrets.randbelow(2**47) + 1)
    sp.entity_id = opts["sp_entity_id"]
    sp.pretty_name = "authpulse probe"
    sp.local_metadata = sp_metadata(opts)
    sp.metadata_expiration_dt = None
    sp._processor = "samlidp.processors.Processor"
    sp._attribute_mapping = json.dumps({})
    sp._nameid_field = "username"
    sp._sign_response = opts.get("sign_response")
    sp._sign_assertion = opts.get("sign_assertion")
    sp._encrypt_saml_responses = bool(opts.get("encrypt_assertion"))
    sp.save()
    return sp.id
