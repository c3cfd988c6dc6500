"""URLs of the Home Console: the API (and its docs) under /api/, the pages, the admin."""

from django.contrib import admin
from django.urls import path

from home.accounts import views as account_views
from home.api import api, redoc
from home.domains import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/redoc/", redoc, name="redoc"),
    path("api/", api.urls),
    path("login/", account_views.LoginView.as_view(), name="login"),
    path("logout/", account_views.LogoutView.as_view(), name="logout"),
    path("", views.dashboard, name="dashboard"),
    path("domains/", views.domain_list, name="domains"),
    path("domains/add/", views.domain_add, name="domain-add"),
    path("domains/<int:pk>/", views.domain_detail, name="domain-detail"),
    path("domains/<int:pk>/renew/", views.domain_renew, name="domain-renew"),
    path("domains/<int:pk>/delete/", views.domain_delete, name="domain-delete"),
    path("domains/<int:pk>/entries/add/", views.entry_add, name="entry-add"),
    path("entries/<int:pk>/tunnel/", views.entry_tunnel, name="entry-tunnel"),
    path("entries/<int:pk>/delete/", views.entry_delete, name="entry-delete"),
    path("healthz", views.healthz, name="healthz"),
]
