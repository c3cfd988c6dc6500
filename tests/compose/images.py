"""The images `make compose-test` runs, made without a registry: a Debian base imported from
the tarball tests/compose/base.sh made (cached), PostgreSQL from Debian's packages on it, and
the project's image from compose/Dockerfile on it, with apt's downloads and a wheelhouse of
the project's requirements cached."""

from __future__ import annotations

import hashlib
import shutil
import time
import tomllib
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


def requirements() -> list[str]:
    """What `pip install` of the project fetches: its dependencies and its build backend."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [*project["build-system"]["requires"], *project["project"]["dependencies"]]


def wheelhouse(engine: Engine, wheels: Path) -> None:
    """Wheels of `requirements()` for the base's Python, fetched from the package index once
    per set of requirements. pip's HTTP cache would not do: the egress of these machines
    strips the headers it needs to keep a download."""
    wanted = requirements()
    stamp = wheels / f".requirements-{hashlib.sha256(repr(wanted).encode()).hexdigest()[:16]}"
    if stamp.exists():
        return
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    engine.podman("run", "--rm", "--network=host", "--volume", f"{wheels}:/wheels", BASE,
                  "pip", "wheel", "--wheel-dir", "/wheels", *wanted, timeout=900)  # fmt: skip
    stamp.touch()


def build_images(engine: Engine, cache: Path) -> dict[str, float]:
    """Build all three; returns the seconds each took."""
    tarball = cache / BASE_TARBALL
    if not tarball.exists():
        raise FileNotFoundError(f"{tarball}: run `make compose-test`, which builds it")
    apt, wheels = cache / "apt", cache / "wheels"
    apt.mkdir(parents=True, exist_ok=True)
    took: dict[str, float] = {}

    started = time.monotonic()
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    engine.podman("import", *changes, str(tarball), BASE, timeout=600)
    took["base"] = time.monotonic() - started

    # The builds reach Debian through the host's network; the caches are volumes, so nothing
    # of them enters an image.
    build = ["build", "--pull=never", "--network=host", "--build-arg", f"BASE={BASE}",
             "--volume", f"{apt}:/var/cache/apt/archives"]  # fmt: skip
    started = time.monotonic()
    engine.podman(*build, "--tag", POSTGRES, "--file", str(HERE / "postgres" / "Containerfile"),
                  str(HERE / "postgres"), timeout=900)  # fmt: skip
    took["postgres"] = time.monotonic() - started

    started = time.monotonic()
    wheelhouse(engine, wheels)
    took["wheels"] = time.monotonic() - started

    started = time.monotonic()
    engine.podman(
        *build, "--volume", f"{wheels}:/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/wheels",
        "--build-arg", "PIP_NO_INDEX=1",
        "--ignorefile", str(ROOT / "compose" / "Dockerfile.dockerignore"),
        "--tag", PROJECT, "--file", str(ROOT / "compose" / "Dockerfile"), str(ROOT), timeout=1200,
    )  # fmt: skip
    took["project"] = time.monotonic() - started
    return took
