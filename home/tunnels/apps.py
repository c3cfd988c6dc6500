from django.apps import AppConfig


class TunnelsConfig(AppConfig):
    name = "home.tunnels"
    label = "tunnels"

    def ready(self) -> None:
        # Every process of the site (web included) sends tasks through the site's own app.
        from home import celery  # noqa: F401
