from django.contrib import admin

from home.certs.models import Domain
from home.tunnels.models import ProxyEntry


class EntryInline(admin.TabularInline):
    model = ProxyEntry
    extra = 0
    fields = ("hostname", "home_port", "proxy_protocol", "tunnel")
    readonly_fields = ("tunnel",)


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("name", "challenge", "cert_status", "cert_expiry", "job_state", "job_updated")
    list_filter = ("cert_status", "job_state", "challenge")
    search_fields = ("name", "email")
    readonly_fields = (
        "cert_status",
        "cert_path",
        "cert_expiry",
        "cert_issued",
        "job_state",
        "job_step",
        "job_error",
        "job_updated",
        "created",
    )
    inlines = [EntryInline]
