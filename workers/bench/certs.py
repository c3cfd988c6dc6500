"""Section 5, certificates: a domain added in the Home Console -> its certificate on disk,
issued by a local Pebble through the edge (HTTP-01 over a temporary tunnel)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from workers.bench.harness import Bench, Console, in_s, log
from workers.local.procs import wait_for


def measure(bench: Bench) -> dict[str, Any]:
    console = bench.console()
    issued: list[float] = []
    count = bench.plan.certificates
    for i in range(count):
        log(f"· certificate {i + 1}/{count}: add domain -> certificate on disk (Pebble)")
        started = time.monotonic()
        issue(bench, console)
        issued.append(time.monotonic() - started)
    return {"add_to_cert_on_disk": in_s(issued), "challenge": "http-01"}


def issue(bench: Bench, console: Console) -> dict[str, Any]:
    """One more domain with its certificate on disk, through the console's API."""
    home, api = console.home, console.api
    body = {
        "name": f"cert{len(console.domains)}.bench.test",
        "email": "bench@example.com",
        "cert_dir": str(home.cert_root),
    }
    r = api.post(f"{home.url}/api/domains", json=body, timeout=10)
    r.raise_for_status()
    domain_id = r.json()["id"]

    def done() -> dict[str, Any] | None:
        domain = api.get(f"{home.url}/api/domains/{domain_id}", timeout=10).json()
        return domain if domain["job"]["state"] in ("done", "failed") else None

    domain: dict[str, Any] = wait_for(done, timeout=120, interval=0.05, what="the certificate")
    if (
        domain["job"]["state"] != "done"
        or not (Path(domain["cert_path"]) / "fullchain.pem").is_file()
    ):
        raise RuntimeError(f"certificate failed: {domain['job']['error']}")
    console.domains.append(domain)
    return domain
