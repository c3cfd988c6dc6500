"""The Content-Security-Policy of both sites' pages (django-csp): scripts only from our own
static files, never inline, so injected markup cannot run; styles may be inline (Django admin,
Swagger UI and ReDoc set them), which runs no code."""

from __future__ import annotations

from csp.constants import NONE, SELF, UNSAFE_INLINE

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        # ReDoc runs its search in a worker it builds from a blob.
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
