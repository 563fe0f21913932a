"""Whether the Hugging Face hub answers: one quick probe, so an offline machine fails in seconds.

Used by :func:`logitscope.load` (hub model ids) and by corpus sources ``hf:NAME`` (:mod:`logitscope.data.corpus`).
"""

from __future__ import annotations

HUB_PROBE_TIMEOUT = 2.0  # seconds to wait for a TCP connection to the hub before calling it unreachable


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) answers an HTTP ``HEAD`` within ``timeout`` seconds.

    ``False`` at once when ``HF_HUB_OFFLINE`` is set. Any HTTP answer counts (the proxy settings of
    the environment apply). Used so that an offline machine fails in about ``timeout`` seconds
    instead of after huggingface_hub's retries (~30 s).
    """
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True  # the server answered
    except (OSError, ValueError):  # URLError, timeouts, refused connections, a malformed endpoint
        return False
    return True
