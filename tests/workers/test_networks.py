"""The one rule for client networks (allowlists): normal form, refusals naming the field."""

from __future__ import annotations

import ipaddress

import pytest

from workers.common.networks import MAX_NETWORKS, split, validate_networks, within


def test_networks_come_out_in_one_normal_form_without_duplicates() -> None:
    got = validate_networks([" 10.0.0.0/8", "192.0.2.7", "2001:DB8::/32", "10.0.0.0/8", "::1"])
    assert got == ["10.0.0.0/8", "192.0.2.7/32", "::1/128", "2001:db8::/32"]


def test_host_bits_set_are_refused_with_the_network_probably_meant() -> None:
    with pytest.raises(
        ValueError,
        match=r"^allow: entry 2, '10\.0\.0\.1/8', has host bits set; did you mean 10\.0\.0\.0/8\?",
    ):
        validate_networks(["127.0.0.1", "10.0.0.1/8"])


@pytest.mark.parametrize("value", ["nonsense", "300.1.2.3/32", "10.0.0.0/33", "", 7])
def test_what_is_not_a_network_is_refused_naming_the_field_and_entry(value: object) -> None:
    with pytest.raises(ValueError, match=r"^allow: entry 1"):
        validate_networks([value])


def test_a_string_instead_of_a_list_and_a_list_too_long_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^allow: must be a list"):
        validate_networks("10.0.0.0/8")
    with pytest.raises(ValueError, match=rf"^allow: at most {MAX_NETWORKS}"):
        validate_networks([f"10.0.{n}.0/24" for n in range(MAX_NETWORKS + 1)])


def test_a_form_field_splits_on_commas_spaces_and_lines() -> None:
    assert split("10.0.0.0/8, 192.0.2.0/24\n::1  ") == ["10.0.0.0/8", "192.0.2.0/24", "::1"]


def test_within_holds_for_nested_networks_of_one_family_only() -> None:
    net = ipaddress.ip_network
    assert within(net("127.0.0.2/32"), net("127.0.0.0/8"))
    assert within(net("127.0.0.0/8"), net("127.0.0.0/8"))
    assert not within(net("127.0.0.0/8"), net("127.0.0.2/32"))
    assert not within(net("::1/128"), net("0.0.0.0/0"))
