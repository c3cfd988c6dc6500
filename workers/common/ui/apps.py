from django.apps import AppConfig


class UiConfig(AppConfig):
    name = "workers.common.ui"
    label = "ui"
