from django.apps import AppConfig


class TrafficConfig(AppConfig):
    """What the cloud's edge says each tunnel carried, fetched by the worker for the pages."""

    name = "home.traffic"
    label = "traffic"
