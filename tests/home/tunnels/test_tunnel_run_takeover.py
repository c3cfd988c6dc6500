"""`home manage tunnel_run` against the cloud's real sshd and forced command: a port still held
by an older session of the same home (its network died, say) is refused, and tunnel_run
connects again once with the takeover, which ends that session and serves the port itself."""

from __future__ import annotations

from pathlib import Path

import yaml

from home.tunnels import ssh
from tests.cloud.edge.test_sshd import edge_site
from tests.support.net import http_get, serve
from workers.local.procs import wait_for
from workers.local.sites import run_tunnel


def test_tunnel_run_takes_over_a_port_an_older_session_of_the_home_holds(tmp_path: Path) -> None:
    with (
        edge_site("single-account", tmp_path) as edge,
        serve("old") as old_service,
        serve("new") as new_service,
    ):
        home, port = edge.alice, edge.alice.ports[0]
        old_spec = ssh.MasterSpec(
            host="127.0.0.1",
            port=edge.cfg.port,
            username=home.login,
            private_key=home.key,
            known_hosts=edge.known_hosts,
            control_path=tmp_path / "old" / "master.sock",
        )
        old = ssh.spawn_master(old_spec, tmp_path / "old.log")
        try:
            assert ssh.master_ready(old, tmp_path / "old.log") is None
            assert ssh.forward_add(old_spec, ssh.Forward(port, old_service.port)) is None
            assert http_get(port, "example.test") == (200, b"old")
            config = tmp_path / "cloudlink.yaml"
            link = {
                "cloudserver_url": "http://127.0.0.1:9",
                "auth_token": "cah_unused_unused",
                "home_slug": "test",
                "ssh": {
                    "host": "127.0.0.1",
                    "port": edge.cfg.port,
                    "username": home.login,
                    "private_key_path": str(home.key),
                    "known_hosts": str(edge.known_hosts),
                },
                "ports": {"base": port, "count": 1},
            }
            config.write_text(yaml.safe_dump(link))
            forwards = [(port, new_service.port)]
            with run_tunnel(tmp_path / "state", config, forwards, tmp_path / "run.log") as run:
                assert "takeover" in Path(f"/proc/{run.pid}/cmdline").read_text()
                assert http_get(port, "example.test") == (200, b"new")
                wait_for(lambda: not ssh.is_running(old), timeout=20, what="the old master's end")
            assert run.proc.returncode == 0
        finally:
            ssh.stop(old)
