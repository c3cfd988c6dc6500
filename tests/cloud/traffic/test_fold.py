"""How the traffic sampler takes differences of HAProxy's per-route counters: what came since
the last sample, with a restarted HAProxy or an expired entry counted from zero again."""

from __future__ import annotations

from cloud.edge.haproxy import RouteCounters
from cloud.traffic.models import RouteTraffic
from cloud.traffic.services import _since_seen


def _row(
    connections: int, bytes_in: int, bytes_out: int, generation: str = "7:100"
) -> RouteTraffic:
    return RouteTraffic(
        port=2000,
        seen_connections=connections,
        seen_bytes_in=bytes_in,
        seen_bytes_out=bytes_out,
        seen_generation=generation,
    )


def _live(connections: int, bytes_in: int, bytes_out: int) -> RouteCounters:
    return RouteCounters(current=1, connections=connections, bytes_in=bytes_in, bytes_out=bytes_out)


def test_what_came_since_the_last_sample_is_the_difference() -> None:
    assert _since_seen(_row(3, 100, 900), _live(5, 150, 1900), "7:100") == (2, 50, 1000)


def test_a_route_never_sampled_counts_everything_its_entry_holds() -> None:
    assert _since_seen(RouteTraffic(port=2000), _live(5, 150, 1900), "7:100") == (5, 150, 1900)


def test_a_new_haproxy_worker_starts_every_counter_from_zero() -> None:
    # More than before, yet all of it new: the restarted worker's table began empty.
    assert _since_seen(_row(3, 100, 900), _live(8, 400, 5000), "9:200") == (8, 400, 5000)


def test_an_entry_that_expired_and_came_back_counts_from_zero() -> None:
    assert _since_seen(_row(30, 10_000, 90_000), _live(2, 300, 800), "7:100") == (2, 300, 800)


def test_a_route_without_an_entry_carried_nothing_since() -> None:
    assert _since_seen(_row(3, 100, 900), None, "7:100") == (0, 0, 0)
