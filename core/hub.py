"""Is the Hugging Face hub reachable? Answer in seconds, not after the hub client's long retries."""
from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlparse

CONNECT_TIMEOUT_S = 3.0
# the app runs for hours: a network that comes or goes is seen within five minutes (a connect that times out
# stalls the page that asks, so not every minute)
RECHECK_S = 300.0
_last_answer: tuple[float, bool] | None = None  # (when, reachable)


def offline_by_setting() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable() -> bool:
    """One TCP connect to the hub's host, at most every RECHECK_S. huggingface_hub would retry for 25-50 s before
    failing offline."""
    global _last_answer
    if offline_by_setting():
        return False
    if _last_answer and time.monotonic() - _last_answer[0] < RECHECK_S:
        return _last_answer[1]
    _last_answer = (time.monotonic(), _connects())
    return _last_answer[1]


def _connects() -> bool:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct connect says nothing; let the hub client try
    try:
        port = endpoint.port or (80 if endpoint.scheme == "http" else 443)  # a mirror at http://host is on 80
        with socket.create_connection((endpoint.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def offline_reason() -> str:
    if offline_by_setting():
        return "HF_HUB_OFFLINE is set"
    return "the Hugging Face hub is not reachable from this machine"
