from django.contrib import admin
from django.urls import path

from cloud import metrics
from cloud.accounts import views as account_views
from cloud.api import api, redoc
from cloud.domains import views as domain_views
from cloud.homes import views as home_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/redoc/", redoc, name="redoc"),
    path("api/", api.urls),
    path("signup/", account_views.signup, name="signup"),
    path("login/", account_views.LoginView.as_view(), name="login"),
    path("logout/", account_views.LogoutView.as_view(), name="logout"),
    path("tokens/", account_views.tokens, name="tokens"),
    path("", home_views.dashboard, name="dashboard"),
    path("homes/register/", home_views.register, name="home-register"),
    path("homes/release/", home_views.release, name="home-release"),
    path("mappings/add/", home_views.mapping_add, name="mapping-add"),
    path("mappings/delete/", home_views.mapping_delete, name="mapping-delete"),
    path("mappings/allow/", home_views.mapping_allow, name="mapping-allow"),
    path("domains/add/", domain_views.domain_add, name="domain-add"),
    path("domains/verify/", domain_views.domain_verify, name="domain-verify"),
    path("domains/delete/", domain_views.domain_delete, name="domain-delete"),
    path("healthz", home_views.healthz, name="healthz"),
    path("metrics", metrics.view, name="metrics"),
]
