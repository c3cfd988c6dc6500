"""WSGI entry point of the Home Console; refuses to start without a valid cloudlink.yaml."""

import os
import sys
from pathlib import Path

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "home.settings")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402

from home.cloudlink.config import ConfigError, load  # noqa: E402

try:
    load(Path(settings.CLOUDLINK_CONFIG))
except ConfigError as exc:
    sys.exit(f"Home Console: {exc}")
