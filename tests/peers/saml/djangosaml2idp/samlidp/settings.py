# djangosaml2idp (pysaml2) as a SAML 2.0 identity provider: test peer, loopback only.
# serve.py sets AUTHPULSE_SAML_DATA (a private temporary directory) and
# AUTHPULSE_SAML_BASE (http://127.0.0.1:<port>) and writes the options there.
import json
import os

from samlidp.config import idp_config

DATA = os.environ["AUTHPULSE_SAML_DATA"]
BASE = os.environ["AUTHPULSE_SAML_BASE"]
with open(os.path.join(DATA, "options.json"), encoding="utf-8") as f:
    OPTIONS = json.load(f)

SECRET_KEY = "authpulse-test-peer-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "samlidp.urls"
# djangosaml2idp 0.7 compares naive datetimes: no time zone support, UTC.
USE_TZ = False
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(DATA, "db.sqlite3"),
        "OPTIONS": {"timeout": 30},
    }
}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "djangosaml2idp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(os.path.dirname(__file__), "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
# The IdP's own login: Django's LoginView (username + password).
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# djangosaml2idp: the pysaml2 IdP configuration (entity id, endpoints, keys).
SAML_IDP_CONFIG = idp_config(OPTIONS, BASE, DATA)
SAML_AUTHN_SIGN_ALG = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SAML_AUTHN_DIGEST_ALG = "http://www.w3.org/2001/04/xmlenc#sha256"

# Server errors (with tracebacks) to stderr, which the test harness keeps.
LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.request": {"handlers": ["stderr"], "level": "ERROR"},
        "djangosaml2idp": {"handlers": ["stderr"], "level": "INFO"},
        "saml2": {"handlers": ["stderr"], "level": "WARNING"},
    },
}
