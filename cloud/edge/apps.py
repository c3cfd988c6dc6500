from django.apps import AppConfig


class EdgeConfig(AppConfig):
    name = "cloud.edge"
    label = "edge"
