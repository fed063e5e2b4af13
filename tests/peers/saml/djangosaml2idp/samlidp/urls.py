from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import include, path
from djangosaml2idp import urls as idp_urls

# IdP-initiated SSO (/idp/sso/init/?sp=<entity id>) only when asked for.
patterns = [
    p
    for p in idp_urls.urlpatterns
    if settings.OPTIONS.get("idp_initiated") or p.name != "saml_idp_init"
]

urlpatterns = [
    path("idp/", include((patterns, "djangosaml2idp"))),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
