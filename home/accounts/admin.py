from django.contrib import admin

from home.accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "prefix", "created", "last_used")
    list_filter = ("user",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "digest", "created", "last_used")

    def has_add_permission(self, request: object) -> bool:
        # A token made here could never be shown to anyone: only its digest is stored.
        return False
