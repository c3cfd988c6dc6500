"""Every custom domain with its owner and state; an administrator revokes one (its claim,
mappings and routes go at once) through the same services the API uses."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest

from cloud.domains import services
from cloud.domains.models import Claim, Domain


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("name", "home", "owner", "status", "reason", "checked", "next_check")
    list_filter = ("status",)
    search_fields = ("name", "home__slug", "home__owner__username")
    readonly_fields = (
        "home",
        "name",
        "token",
        "status",
        "reason",
        "failures",
        "checked",
        "next_check",
        "verified",
        "created",
    )
    actions = ["revoke"]

    @admin.display(description="owner")
    def owner(self, obj: Domain) -> User | None:
        return obj.home.owner

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # homes add their domains; ownership needs the DNS proof

    @admin.action(description="Revoke the selected domains (their routes go at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Domain]) -> None:
        for domain in queryset:
            services.domain_revoke(domain)
        self.message_user(request, f"Revoked {len(queryset)} domain(s).", messages.SUCCESS)

    def delete_model(self, request: HttpRequest, obj: Domain) -> None:
        services.domain_delete(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Domain]) -> None:
        for domain in queryset:
            services.domain_delete(domain)


@admin.register(Claim)
class ClaimAdmin(admin.ModelAdmin):
    """The ownership tree, read only: it changes through the domain services alone."""

    list_display = ("name", "kind", "home", "domain", "created")
    list_filter = ("kind",)
    search_fields = ("name", "home__slug")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
