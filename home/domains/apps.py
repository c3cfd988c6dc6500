from django.apps import AppConfig


class DomainsConfig(AppConfig):
    name = "home.domains"
    label = "domains"
