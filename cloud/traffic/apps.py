from django.apps import AppConfig


class TrafficConfig(AppConfig):
    """What each route carried: totals, the last hour's samples, and the tunnel's state."""

    name = "cloud.traffic"
    label = "traffic"
