"""Users, their TOTP authenticators and the client."""
from allauth.idp.oidc.models import Client
from allauth.mfa.totp.internal.auth import TOTP
from django.contrib.auth.models import User

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
            TOTP.activate(user, totp)
    client = Client(
        id="probe-web",
        name="authpulse probe",
        type=Client.Type.CONFIDENTIAL,
        skip_consent=False,
    )
    client.set_secret("probe-web-secret")  # stored hashed
    client.set_redirect_uris(["https://probe.invalid/cb"])
    client.set_scopes(["openid", "profile", "email"])
    client.grant_types = "authorization_code\nrefresh_token"
    client.response_types = "code"
    client.save()
