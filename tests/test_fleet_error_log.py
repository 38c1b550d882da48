"""What a fleet logs of one node's reported errors (ncplib.fleet._error_log), on a given clock."""

from __future__ import annotations

from ncplib.fleet._error_log import ErrorLog


def records(log: ErrorLog, times: list[float]) -> list[str | None]:
    return [log.record(now, f"error at {now:g}") for now in times]


def test_a_burst_is_logged_then_the_rest_of_the_window_is_counted() -> None:
    log = ErrorLog(burst=3, window=10.0)
    assert records(log, [0, 1, 2, 3, 4, 9.9]) == [
        "error at 0",
        "error at 1",
        "error at 2 (this node's further errors are not logged for up to 10 s)",
        None,
        None,
        None,
    ]


def test_the_next_error_after_the_window_gives_the_count_not_logged() -> None:
    log = ErrorLog(burst=2, window=10.0)
    assert records(log, [5, 6, 7, 8, 15, 16]) == [
        "error at 5",
        "error at 6 (this node's further errors are not logged for up to 10 s)",
        None,
        None,
        "error at 15 (2 earlier errors of this node not logged)",
        "error at 16 (this node's further errors are not logged for up to 10 s)",
    ]


def test_errors_spread_out_are_all_logged() -> None:
    log = ErrorLog(burst=2, window=10.0)
    assert records(log, [0, 10, 20, 30.5]) == ["error at 0", "error at 10", "error at 20", "error at 30.5"]


def test_a_window_begins_at_the_first_error_after_a_quiet_spell() -> None:
    log = ErrorLog(burst=2, window=10.0)
    assert records(log, [0, 100, 101, 105, 109]) == [
        "error at 0",
        "error at 100",
        "error at 101 (this node's further errors are not logged for up to 10 s)",
        None,
        None,
    ]


def test_a_clock_going_back_starts_a_new_window() -> None:
    log = ErrorLog(burst=2, window=10.0)
    assert records(log, [50, 51, 52, 40]) == [
        "error at 50",
        "error at 51 (this node's further errors are not logged for up to 10 s)",
        None,
        "error at 40 (1 earlier error of this node not logged)",
    ]
