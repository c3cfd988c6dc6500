from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, str]:
    # Not `site_name`: Django's auth views put the request's host under that name, which
    # made the login page's title bar read "127.0.0.1:8000".
    return {"ui_site_name": getattr(settings, "SITE_NAME", "cloudathome")}
