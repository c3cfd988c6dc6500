from django.apps import AppConfig


class UiConfig(AppConfig):
    name = "workers.ui"
    label = "ui"
