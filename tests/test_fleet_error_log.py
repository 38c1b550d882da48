"""What a fleet logs of one node's reported errors (ncplib.fleet._error_log), on a given clock."""

from __future__ import annotations

from ncplib.fleet._error_log import ErrorLog

FURTHER = " (this node's further errors are not logged for up to 10 s)"


def records(log: ErrorLog, times: list[float]) -> list[str | None]:
    return [log.record(now, f"error at {now:g}") for now in times]


def test_a_burst_is_logged_then_the_rest_of_the_window_is_counted() -> None:
    log = ErrorLog(burst=3, window=10.0)
    assert records(log, [0, 1, 2, 3, 4, 9.9]) == [
        "error at 0",
        "error at 1",
        "error at 2" + FURTHER,
        None,
        None,
        None,
    ]
    assert log.summary() == "3 errors of this node not logged, the last: error at 9.9"
    assert log.summary() is None  # given once


def test_the_next_error_after_the_window_gives_the_count_not_logged() -> None:
    log = ErrorLog(burst=2, window=10.0)
    assert records(log, [5, 6, 7, 8, 15, 16]) == [
        "error at 5",
        "error at 6" + FURTHER,
        None,
        None,
        "error at 15 (before it, 2 errors of this node not logged, the last: error at 8)",
        "error at 16" + FURTHER,
    ]
    assert log.summary() is None


def test_a_summary_taken_mid_window_leaves_the_window_as_it_is() -> None:
    log = ErrorLog(burst=1, window=10.0)
    assert records(log, [0, 1]) == ["error at 0" + FURTHER, None]
    assert log.summary() == "1 error of this node not logged, the last: error at 1"
    assert records(log, [2, 10]) == [
        None,
        "error at 10 (before it, 1 error of this node not logged, the last: error at 2)" + FURTHER,
    ]


def test_errors_spread_out_are_all_logged() -> None:
    log = ErrorLog(burst=2, window=10.0)
    assert records(log, [0, 10, 20, 30.5]) == ["error at 0", "error at 10", "error at 20", "error at 30.5"]
    assert log.summary() is None


def test_a_window_opens_at_the_first_error_after_a_quiet_spell() -> None:
    log = ErrorLog(burst=2, window=10.0)
    assert records(log, [0, 100, 101, 105, 109]) == [
        "error at 0",
        "error at 100",
        "error at 101" + FURTHER,
        None,
        None,
    ]


def test_a_clock_going_back_opens_a_new_window() -> None:
    log = ErrorLog(burst=2, window=10.0)
    assert records(log, [50, 51, 52, 40]) == [
        "error at 50",
        "error at 51" + FURTHER,
        None,
        "error at 40 (before it, 1 error of this node not logged, the last: error at 52)",
    ]
