"""Options of the simulated model and its seeded fault injector."""

from __future__ import annotations

import pytest

from adapters.egress.sim_options import FaultInjector, SimOptions


def test_options_from_a_config_mapping_keep_every_value() -> None:
    options = SimOptions.from_mapping({"latency_ms": 5, "fail_rate": 0.25, "drop_after_chunks": 3})
    assert (options.latency_ms, options.fail_rate, options.drop_after_chunks) == (5, 0.25, 3)
    assert options.fail_status == 500


def test_unknown_option_keys_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="latency, speed"):
        SimOptions.from_mapping({"speed": 1, "latency": 2, "seed": 1})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("fail_rate", 1.5),
        ("fail_status", 200),
        ("latency_ms", -1),
        ("latency_ms", True),
        ("reply_words", 0),
        ("drop_after_chunks", "3"),
        ("cached_fraction", -0.1),
    ],
)
def test_out_of_range_option_values_are_rejected_naming_the_option(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        SimOptions.from_mapping({key: value})


def test_cli_flags_left_unset_keep_the_defaults() -> None:
    assert SimOptions.from_cli() == SimOptions()
    assert SimOptions.from_cli(latency_ms=20, fail_rate=0.1) == SimOptions(
        latency_ms=20, fail_rate=0.1
    )


def test_faults_repeat_exactly_for_the_same_seed() -> None:
    options = SimOptions(fail_rate=0.5, seed=7)
    first, second = FaultInjector(options), FaultInjector(options)
    run = [first.should_fail() for _ in range(50)]
    assert run == [second.should_fail() for _ in range(50)]
    assert 0 < sum(run) < 50


def test_fail_rate_zero_never_fails_and_one_always_fails() -> None:
    never, always = FaultInjector(SimOptions()), FaultInjector(SimOptions(fail_rate=1))
    assert not any(never.should_fail() for _ in range(100))
    assert all(always.should_fail() for _ in range(100))


def test_cli_style_mapping_with_unset_flags_as_none_is_accepted() -> None:
    options = SimOptions.from_mapping(
        {"latency_ms": 0.0, "fail_status": 500, "drop_after_chunks": None, "reply_words": None}
    )
    assert options == SimOptions()
