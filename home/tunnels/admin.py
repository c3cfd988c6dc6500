from django.contrib import admin

from home.tunnels.models import ProxyEntry, Tunnel


@admin.register(Tunnel)
class TunnelAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "remote_port",
        "local_host",
        "local_port",
        "desired_open",
        "state",
        "pid",
        "since",
        "failures",
        "temporary",
    )
    list_filter = ("state", "desired_open", "temporary")
    search_fields = ("name",)
    # Observed state is the supervisor's to write; an edit here would be overwritten or
    # make it stop a process that is not ours.
    readonly_fields = (
        "state",
        "pid",
        "start_time",
        "since",
        "last_error",
        "failures",
        "retry_at",
        "temporary",
        "created",
    )


@admin.register(ProxyEntry)
class ProxyEntryAdmin(admin.ModelAdmin):
    list_display = ("hostname", "home_port", "proxy_protocol", "domain", "tunnel", "created")
    list_select_related = ("domain", "tunnel")
    search_fields = ("hostname",)
    # The tunnel port is the cloud mapping's: changing it here would not move the mapping.
    readonly_fields = ("tunnel",)
