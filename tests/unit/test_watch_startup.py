"""What ``run`` and ``relay`` say while ChatProviders cannot be listed yet: each kind of
failure once, as a warning saying what to do, then quietly; a CRD still initialising is INFO."""

from __future__ import annotations

import logging

from chatprovider.kube.client import ApiError
from chatprovider.watch import _log_list_failure


def test_each_startup_failure_is_said_once(caplog) -> None:
    said: set[str] = set()
    with caplog.at_level(logging.DEBUG, logger="chatprovider.watch"):
        for _ in range(3):
            _log_list_failure(ApiError(404, "", "404 page not found"), said)
            _log_list_failure(OSError("Connect call failed"), said)
            _log_list_failure(ApiError(429, "TooManyRequests", "storage is (re)initializing"),
                              said)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith("the ChatProvider CRD is not installed in this cluster: "
                                  "install it with `chatprovider crd | kubectl apply")
    assert warnings[1].startswith("cannot list ChatProviders (Connect call failed): is the API "
                                  "server reachable")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    busy = [r for r in caplog.records if "storage is (re)initializing" in r.getMessage()]
    assert len(busy) == 3 and {r.levelno for r in busy} == {logging.INFO}
