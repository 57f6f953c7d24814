"""Token authentication when this process joins a Ray cluster by its address.

A cluster started with ``RAY_AUTH_MODE=token`` (Ray 2.52 and later; ``ray start --head`` picks it
whenever a token file exists) accepts only RPCs that carry its token. A driver without that token
retries for about 20 s, logging one ``InvalidAuthToken`` warning per attempt, and then raises a
bare ``ConnectionError``. One probe of the cluster's GCS before ``ray.init`` turns that into one
:class:`~nas.errors.ConfigError` line that says how to provide the token.

Ray looks for the token in ``RAY_AUTH_TOKEN``, then the file named by ``RAY_AUTH_TOKEN_PATH``,
then ``~/.ray/auth_token``; ``ray get-auth-token`` prints the one a machine uses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

from nas.errors import ConfigError

GIVE_TOKEN = (
    "give this machine the head's token in RAY_AUTH_TOKEN, in a file named by "
    "RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token (`ray get-auth-token` on the head prints it)"
)
TOKEN_HELP = f"set RAY_AUTH_MODE=token and {GIVE_TOKEN}"

# Addresses ray.init resolves itself: a fresh local instance, this machine's cluster, Ray Client.
_NOT_PROBED = ("", "local", "auto")


def is_cluster_address(address: str | None) -> bool:
    """Whether ``address`` names a cluster's GCS (``host:port``), the case this module checks."""
    return bool(address) and address not in _NOT_PROBED and "://" not in str(address)


def token_source() -> str:
    """Where Ray takes this process's token from, in its own order of precedence."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}"
    return "~/.ray/auth_token"


def check_cluster_access(address: str, *, timeout_s: float = 5.0) -> None:
    """Raise :class:`ConfigError` unless this process can talk to the GCS at ``address``.

    Checks that something listens there, that token mode has a token to send, and that the
    cluster accepts this process's credentials. Other failures are left to ``ray.init``.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray.address={address!r} must be HOST:PORT (the head's GCS port)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            f"ray.address={address!r}: no Ray head answers there ({exc.strerror or exc}); "
            "start it with `ray start --head --port=PORT` or correct the address"
        ) from None
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
        from ray._raylet import (  # type: ignore[attr-defined]  # Cython: not in Ray's stubs
            AuthenticationTokenLoader,
            GcsClient,
        )
        from ray.exceptions import AuthenticationError
    except ImportError:  # a Ray without token authentication: nothing to check
        return
    token_mode = is_token_auth_enabled()
    if token_mode and not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        raise ConfigError(
            f"ray.address={address!r}: RAY_AUTH_MODE=token but this machine has no token; "
            f"{GIVE_TOKEN}"
        )
    try:
        with _stderr_silenced():  # Ray's own warning line; the ConfigError below replaces it
            GcsClient(address=address)
    except AuthenticationError:
        if token_mode:
            raise ConfigError(
                f"ray.address={address!r}: the cluster rejected this machine's token (from "
                f"{token_source()}); {GIVE_TOKEN}"
            ) from None
        raise ConfigError(
            f"ray.address={address!r}: the cluster requires token authentication; {TOKEN_HELP}"
        ) from None
    except Exception:
        return


def prepare_local_instance() -> str | None:
    """Keep token authentication on for a fresh local instance, quietly; say where a token goes.

    Ray 2.52+ turns token mode on for a new local instance when ``RAY_AUTH_MODE`` is unset, logs
    a warning the user can do nothing about (other than switch security off), and writes a new
    token to ``~/.ray/auth_token`` with an INFO line. Setting the mode explicitly to ``token``
    keeps the same protection without the warning. Returns the one line to print when a token
    file is about to be written (none exists yet), else ``None``.
    """
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return None  # the user chose; Ray respects the choice without a warning
    try:
        from ray._raylet import (  # type: ignore[attr-defined]  # Cython module, no stubs
            AuthenticationTokenLoader,
            Config,
        )
    except ImportError:  # a Ray without token authentication
        return None
    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")  # Ray reads its config once; refresh it, as Ray's own switch does
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.WARNING
    )
    if AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        return None
    return (
        "ray: token authentication is on for the local instance; Ray writes a new token to "
        f"{_default_token_path()} (nodes joining this machine's instances need it)"
    )


def _default_token_path() -> str:
    return os.path.join(os.path.expanduser("~"), ".ray", "auth_token")


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 (where Ray's C++ core logs) to /dev/null for the block."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


__all__ = [
    "GIVE_TOKEN",
    "TOKEN_HELP",
    "check_cluster_access",
    "is_cluster_address",
    "prepare_local_instance",
    "token_source",
]
