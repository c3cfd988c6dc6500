from django.contrib import admin

from home.domains.models import Domain, ProxyEntry


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


@admin.register(ProxyEntry)
class ProxyEntryAdmin(admin.ModelAdmin):
    list_display = ("hostname", "home_port", "proxy_protocol", "domain", "tunnel", "created")
    list_select_related = ("domain", "tunnel")
    search_fields = ("hostname",)
    # The tunnel port is the cloud mapping's: changing it here would not move the mapping.
    readonly_fields = ("tunnel",)
