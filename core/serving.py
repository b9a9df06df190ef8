"""Serve a node's HTTP app on a port that is bound before the node tells anyone about it.

    serve(host=settings.host, port=settings.port, env_prefix="MINER_", prepare=announce_and_build_app)

The order matters. A node that announced its address on chain (or started workers that claim tasks from a shared
database) and only then found its port taken would exit having done harm: validators would look for it at an address
where another process answers, or tasks would be claimed and dropped. So the listening socket comes first, then
`prepare` (start checks, announcing the address, building the app), then uvicorn on that very socket.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from core.chain import Chain, ChainError, open_chain
from core.settings import NodeSettings, StartCheckError, check_registration
from core.wallets import WalletError, load_wallet

logger = logging.getLogger(__name__)

# uvicorn's default backlog.
BACKLOG = 2048


class ServingError(Exception):
    """The node cannot listen where its settings say; the message is one line saying what to change."""


class PortInUse(ServingError):
    pass


def bind_listener(host: str, port: int, *, env_prefix: str) -> socket.socket:
    """A TCP socket bound to (host, port) and listening; PortInUse / ServingError when that is not possible.

    `env_prefix` ("VALIDATOR_", "MINER_", ...) names the settings to change in the error message.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted node bind while connections of its previous run linger in TIME_WAIT; a port another
        # process listens on is still refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {host} is already in use; set {env_prefix}PORT (or --port) to a free port"
            ) from None
        reason = error.strerror or str(error)
        raise ServingError(
            f"cannot listen on {host}:{port}: {reason}; check {env_prefix}HOST and {env_prefix}PORT"
        ) from None
    return sock


def serve(
    *,
    host: str,
    port: int,
    env_prefix: str,
    prepare: Callable[[], Any],
    access_log: bool = True,
) -> None:
    """Bind (host, port), call `prepare()` for the ASGI app, then serve it on the bound socket until interrupted.

    Raises PortInUse / ServingError before `prepare` runs when the port cannot be bound; whatever `prepare` raises
    (or exits with) propagates, with the socket closed.
    """
    sock = bind_listener(host, port, env_prefix=env_prefix)
    try:
        app = prepare()
        # log_config=None keeps the logging that setup_logging installed; host and port only label uvicorn's logs.
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=access_log)
        server = uvicorn.Server(config)
        logger.info("listening on %s:%d", host, port)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            # uvicorn shuts down gracefully on Ctrl-C, then raises the signal again; as `uvicorn.run` does, an
            # interrupt after a clean shutdown is a normal end.
            pass
    finally:
        sock.close()
    if not server.started:
        # The app's startup failed (uvicorn has logged why); the status is uvicorn's.
        sys.exit(STARTUP_FAILURE)


def join_network(settings: NodeSettings, *, address: str) -> tuple[Chain, str]:
    """Load the node's wallet, check that its hotkey is registered on the netuid, and announce `address` on chain.

    For miners and trainer hosts, called once their port is bound: announcing an address this process cannot serve
    would hide the node that does serve it. Blocking. Returns the chain and the hotkey; any problem is a
    `ServingError` with a one-line message saying what to do.
    """
    try:
        wallet = load_wallet(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
        hotkey_ss58 = wallet.hotkey.ss58_address
        chain = open_chain(settings)

        async def announce() -> None:
            await check_registration(chain, settings, hotkey_ss58)
            await chain.serve(hotkey_ss58, address)

        asyncio.run(announce())
    except (WalletError, ChainError, StartCheckError) as error:
        raise ServingError(str(error)) from None
    return chain, hotkey_ss58
