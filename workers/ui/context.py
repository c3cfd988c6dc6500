from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, str]:
    return {"site_name": getattr(settings, "SITE_NAME", "cloudathome")}
