"""The home's one door to the cloud's REST API (token auth, explicit timeouts). Errors come
out as CloudError with one human line; the API's {"detail": ...} is passed through."""

from __future__ import annotations

from typing import Any

import requests


class CloudError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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
                detail = response.json().get("detail")
            except ValueError:
                detail = None
            raise CloudError(
                f"{detail or response.reason} (HTTP {response.status_code})", response.status_code
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
        self, slug: str, host: str, scheme: str, tunnel_port: int, proxy_protocol: bool = False
    ) -> dict[str, Any]:
        body = {
            "host": host,
            "scheme": scheme,
            "tunnel_port": tunnel_port,
            "proxy_protocol": proxy_protocol,
        }
        return dict(self._call("POST", f"/homes/{slug}/proxy-mappings", json=body))

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
