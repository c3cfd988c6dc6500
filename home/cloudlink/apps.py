from django.apps import AppConfig


class CloudlinkConfig(AppConfig):
    name = "home.cloudlink"
    label = "cloudlink"
