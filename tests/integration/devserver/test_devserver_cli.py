"""``python -m chatprovider_tools.devserver``: the demo and benchmark upstream, and its life
cycle."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx
import pytest

from chatprovider_tools.devserver import DevServer
from chatprovider_tools.devserver.cli import parse_args


def test_cli_serves_the_flavour_and_stops_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "chatprovider_tools.devserver", "--flavour", "ollama", "--port", "0",
         "--models", "llama3:8b, phi3:mini", "--api-key", "k1", "--api-key", "k2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("devserver ollama listening on http://127.0.0.1:")
        url = line.split()[-1]
        with httpx.Client() as client:
            assert client.get(f"{url}/v1/models").status_code == 401
            body = client.get(f"{url}/v1/models", headers={"Authorization": "Bearer k2"}).json()
        assert [m["id"] for m in body["data"]] == ["llama3:8b", "phi3:mini"]
        assert {m["owned_by"] for m in body["data"]} == {"library"}
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err


def test_parse_args_defaults_and_errors():
    args = parse_args(["--flavour", "tgi", "--no-models-route"])
    assert (args.flavour, args.port, args.models_status, args.api_keys) == ("tgi", None, 404, [])
    assert parse_args(["--models-405"]).models_status == 405
    with pytest.raises(SystemExit):
        parse_args(["--tls-cert", "cert.pem"])
    with pytest.raises(SystemExit):
        parse_args(["--flavour", "nope"])


def test_a_busy_port_is_a_clear_start_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(RuntimeError, match="failed to start"):
            DevServer(port=busy.getsockname()[1]).start()


def test_unknown_flavour_is_refused():
    with pytest.raises(ValueError, match="known: generic, ollama, tgi, vllm"):
        DevServer("openai")


def test_a_stopped_server_can_start_again():
    srv = DevServer()
    for _ in range(2):
        with srv:
            assert httpx.get(f"{srv.url}/models").status_code == 200
