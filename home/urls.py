"""URLs of the Home Console: the API (and its docs) under /api/, the pages, the admin."""

from django.contrib import admin
from django.urls import path

from home import metrics, views
from home.accounts import views as account_views
from home.api import api, redoc
from home.certs import views as certs
from home.cloudlink import views as cloudlink
from home.tunnels import views as tunnels

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/redoc/", redoc, name="redoc"),
    path("api/", api.urls),
    path("login/", account_views.LoginView.as_view(), name="login"),
    path("logout/", account_views.LogoutView.as_view(), name="logout"),
    path("", views.dashboard, name="dashboard"),
    path("link/check/", cloudlink.link_check_now, name="link-check"),
    path("domains/", certs.domain_list, name="domains"),
    path("domains/add/", certs.domain_add, name="domain-add"),
    path("domains/<int:pk>/", certs.domain_detail, name="domain-detail"),
    path("domains/<int:pk>/renew/", certs.domain_renew, name="domain-renew"),
    path("domains/<int:pk>/verify/", certs.domain_verify, name="domain-verify"),
    path("domains/<int:pk>/delete/", certs.domain_delete, name="domain-delete"),
    path("domains/<int:pk>/entries/add/", tunnels.entry_add, name="entry-add"),
    path("entries/<int:pk>/tunnel/", tunnels.entry_tunnel, name="entry-tunnel"),
    path("entries/<int:pk>/delete/", tunnels.entry_delete, name="entry-delete"),
    path("entries/<int:pk>/allow/", tunnels.entry_allow, name="entry-allow"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.view, name="metrics"),
]
