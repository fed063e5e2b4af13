"""Users, their TOTP devices, the RSA signing key and the client."""
import base64

from django.contrib.auth.models import User
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice
from oidc_provider.models import Client, ResponseType

# (user, password, base32 TOTP secret or None)
USERS = [
    ("alice", "alice-password", None),
    ("bob", "bob-password", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
    ("carol", "carol-password", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
]


def run():
    for name, password, totp in USERS:
        user = User.objects.create_user(name, f"{name}@probe.invalid", password)
        if totp:
            key = base64.b32decode(totp).hex()
            TOTPDevice.objects.create(user=user, name="default", key=key, confirmed=True)
    call_command("creatersakey")
    client = Client.objects.create(
        name="authpulse probe",
        client_id="probe-web",
        client_secret="probe-web-secret",
        client_type="confidential",
        _redirect_uris="https://probe.invalid/cb",
        require_consent=True,
        reuse_consent=False,
        _scope="openid profile email",
    )
    client.response_types.add(ResponseType.objects.get(value="code"))
