"""`core.serving`: the port is bound before `prepare` runs, a taken port is one clear error, the app is served."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.serving import PortInUse, ServingError, bind_listener, serve

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken_port():
    """A port another process's socket is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_bind_listener_gives_a_socket_that_accepts_connections():
    sock = bind_listener("127.0.0.1", 0, env_prefix="MINER_")
    try:
        with socket.create_connection(sock.getsockname(), timeout=5):
            connection, _ = sock.accept()
            connection.close()
    finally:
        sock.close()


def test_a_port_in_use_is_one_line_naming_the_setting(taken_port):
    with pytest.raises(PortInUse) as error:
        bind_listener("127.0.0.1", taken_port, env_prefix="TRAINER_")
    assert str(error.value) == (
        f"port {taken_port} on 127.0.0.1 is already in use; set TRAINER_PORT (or --port) to a free port"
    )


def test_an_address_of_another_machine_names_host_and_port():
    # 203.0.113.0/24 is reserved for documentation: no interface of this machine has it.
    with pytest.raises(ServingError) as error:
        bind_listener("203.0.113.7", 9001, env_prefix="VALIDATOR_")
    assert not isinstance(error.value, PortInUse)
    assert str(error.value).startswith("cannot listen on 203.0.113.7:9001: ")
    assert str(error.value).endswith("; check VALIDATOR_HOST and VALIDATOR_PORT")


def test_serve_on_a_port_in_use_never_prepares(taken_port):
    prepared = []
    with pytest.raises(PortInUse):
        serve(host="127.0.0.1", port=taken_port, env_prefix="MINER_", prepare=lambda: prepared.append(True))
    assert prepared == []


def test_a_failing_prepare_releases_the_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def prepare():
        raise RuntimeError("the hotkey is not registered")

    with pytest.raises(RuntimeError, match="not registered"):
        serve(host="127.0.0.1", port=port, env_prefix="MINER_", prepare=prepare)
    bind_listener("127.0.0.1", port, env_prefix="MINER_").close()


SERVER = """
import socket, sys
from fastapi import FastAPI
from core.serving import serve

port = int(sys.argv[1])

def prepare():
    # The port must already take connections when the node announces it.
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    print("prepared with the port bound", flush=True)
    app = FastAPI()
    app.get("/ping")(lambda: {"pong": True})
    return app

serve(host="127.0.0.1", port=port, env_prefix="MINER_", prepare=prepare)
"""


def test_serve_prepares_after_binding_and_serves_until_interrupted():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(150):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                time.sleep(0.1)
        assert response.json() == {"pong": True}
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert stdout == "prepared with the port bound\n"
    # Ctrl-C after a clean shutdown is a normal end, not a traceback.
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
