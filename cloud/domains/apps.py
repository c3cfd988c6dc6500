from django.apps import AppConfig


class DomainsConfig(AppConfig):
    name = "cloud.domains"
    label = "domains"
