from django.apps import AppConfig


class CertsConfig(AppConfig):
    name = "home.certs"
    label = "certs"
