from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "home.accounts"
    label = "accounts"
    verbose_name = "Accounts and API tokens"
