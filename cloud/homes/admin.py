from django.contrib import admin

from cloud.homes.models import Home, ProxyMapping


class MappingInline(admin.TabularInline):
    model = ProxyMapping
    extra = 0


@admin.register(Home)
class HomeAdmin(admin.ModelAdmin):
    list_display = ("index", "slug", "owner", "ssh_username", "status", "updated")
    list_filter = ("status",)
    search_fields = ("slug", "ssh_username", "owner__username")
    readonly_fields = ("index", "slug", "public_key", "ssh_username", "updated")
    inlines = [MappingInline]


@admin.register(ProxyMapping)
class ProxyMappingAdmin(admin.ModelAdmin):
    list_display = ("host", "scheme", "tunnel_port", "proxy_protocol", "home", "created")
    search_fields = ("host",)
