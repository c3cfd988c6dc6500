from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from cloud.accounts.models import ApiToken

User = get_user_model()


@admin.action(description="Approve (activate) selected accounts")
def approve(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    approved = queryset.filter(is_active=False).update(is_active=True)
    modeladmin.message_user(request, f"{approved} account(s) approved.")


admin.site.unregister(User)


@admin.register(User)
class AccountAdmin(UserAdmin):
    list_display = ("username", "email", "is_active", "is_staff", "date_joined")
    list_filter = ("is_active", "is_staff")
    actions = [approve]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "prefix", "created", "last_used")
    readonly_fields = ("prefix", "digest", "created", "last_used")
