from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "cloud.accounts"
    label = "accounts"
