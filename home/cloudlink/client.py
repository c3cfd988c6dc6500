"""The home's one door to the cloud's REST API (token auth, explicit timeouts). Errors come
out as CloudError with one human line; the API's {"detail": ...} is passed through."""

from __future__ import annotations

from typing import Any

import requests


class CloudError(Exception):
    def __init__(self, message: str, status: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field  # the API's own name of the field it refused, when it said


class CloudClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}/api{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise CloudError(f"cannot reach the cloud at {self.base_url}") from None
        except requests.Timeout:
            raise CloudError(
                f"the cloud at {self.base_url} did not answer in {self.timeout:g} s"
            ) from None
        if response.status_code >= 400:
            try:
                answer = response.json()
                detail, field = answer.get("detail"), answer.get("field")
            except (ValueError, AttributeError):
                detail = field = None
            raise CloudError(
                f"{detail or response.reason} (HTTP {response.status_code})",
                response.status_code,
                field if isinstance(field, str) else None,
            )
        return response.json() if response.content else None

    def token(self, username: str, password: str) -> str:
        data = self._call(
            "POST", "/auth/token", json={"username": username, "password": password, "name": "home"}
        )
        return str(data["token"])

    def claim_home(self, public_key: str) -> dict[str, Any]:
        return dict(self._call("POST", "/homes", json={"public_key": public_key}))

    def home(self, slug: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/homes/{slug}"))

    def release_home(self, slug: str) -> None:
        self._call("DELETE", f"/homes/{slug}")

    def mappings(self, slug: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/homes/{slug}/proxy-mappings"))

    def create_mapping(
        self,
        slug: str,
        host: str,
        scheme: str,
        tunnel_port: int,
        proxy_protocol: bool = False,
        allow: list[str] | None = None,
    ) -> dict[str, Any]:
        """A mapping of `host`, or with scheme tcp (host "") of a public port the cloud picks
        (in the answer's `public_port`)."""
        body = {
            "host": host,
            "scheme": scheme,
            "tunnel_port": tunnel_port,
            "proxy_protocol": proxy_protocol,
            "allow": allow or [],
        }
        return dict(self._call("POST", f"/homes/{slug}/proxy-mappings", json=body))

    def set_mapping_allow(self, slug: str, key: str, scheme: str, allow: list[str]) -> None:
        """Replace a mapping's allowlist (`key`: its host, or its public port for tcp)."""
        self._call(
            "PATCH",
            f"/homes/{slug}/proxy-mappings/{key}",
            params={"scheme": scheme},
            json={"allow": allow},
        )

    def delete_mapping(
        self, slug: str, host: str, scheme: str | None = None, missing_ok: bool = True
    ) -> None:
        params = {"scheme": scheme} if scheme else None
        try:
            self._call("DELETE", f"/homes/{slug}/proxy-mappings/{host}", params=params)
        except CloudError as exc:
            if not (missing_ok and exc.status == 404):
                raise

    def domains(self, slug: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/homes/{slug}/domains"))

    def add_domain(self, slug: str, name: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/homes/{slug}/domains", json={"name": name}))

    def verify_domain(self, slug: str, name: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/homes/{slug}/domains/{name}/verify"))
