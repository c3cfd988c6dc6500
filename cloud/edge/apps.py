from django.apps import AppConfig


class EdgeAppConfig(AppConfig):
    """The edge app (its admin API and tasks); haproxy.EdgeConfig is HAProxy's own settings."""

    name = "cloud.edge"
    label = "edge"
