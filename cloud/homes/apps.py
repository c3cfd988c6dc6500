from django.apps import AppConfig


class HomesConfig(AppConfig):
    name = "cloud.homes"
    label = "homes"

    def ready(self) -> None:
        # Every process of the site (web included) sends tasks through the site's own app.
        from cloud import celery  # noqa: F401
