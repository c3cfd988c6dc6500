"""The images `make compose-test` runs, made without a registry: a Debian base imported from
the tarball tests/compose/base.sh made (cached), PostgreSQL from Debian's packages on it, and
the project's image from compose/Dockerfile on it, with apt's and pip's downloads cached."""

from __future__ import annotations

import time
from pathlib import Path

from tests.compose.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BASE_TARBALL = "base-bookworm.tar"
BASE = "localhost/cloudathome-test-base:bookworm"
POSTGRES = "localhost/cloudathome-test-postgres:latest"  # tests/compose/cloud.override.yaml
PROJECT = "cloudathome:latest"  # what compose/*.yaml run
# What compose/Dockerfile asks of its base: Python 3.11's `python` and `pip` first on PATH.
BASE_CHANGES = (
    "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)


def build_images(engine: Engine, cache: Path) -> dict[str, float]:
    """Build all three; returns the seconds each took."""
    tarball = cache / BASE_TARBALL
    if not tarball.exists():
        raise FileNotFoundError(f"{tarball}: run `make compose-test`, which builds it")
    apt, pip = cache / "apt", cache / "pip"
    apt.mkdir(parents=True, exist_ok=True)
    pip.mkdir(parents=True, exist_ok=True)
    took: dict[str, float] = {}

    started = time.monotonic()
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    engine.podman("import", *changes, str(tarball), BASE, timeout=600)
    took["base"] = time.monotonic() - started

    # The builds reach Debian and PyPI through the host's network; the caches are volumes,
    # so nothing of them enters an image.
    build = ["build", "--pull=never", "--network=host", "--build-arg", f"BASE={BASE}",
             "--volume", f"{apt}:/var/cache/apt/archives"]  # fmt: skip
    started = time.monotonic()
    engine.podman(*build, "--tag", POSTGRES, "--file", str(HERE / "postgres" / "Containerfile"),
                  str(HERE / "postgres"), timeout=900)  # fmt: skip
    took["postgres"] = time.monotonic() - started

    started = time.monotonic()
    engine.podman(
        *build, "--volume", f"{pip}:/root/.cache/pip", "--build-arg", "PIP_NO_CACHE_DIR=",
        "--ignorefile", str(ROOT / "compose" / "Dockerfile.dockerignore"),
        "--tag", PROJECT, "--file", str(ROOT / "compose" / "Dockerfile"), str(ROOT), timeout=1200,
    )  # fmt: skip
    took["project"] = time.monotonic() - started
    return took
