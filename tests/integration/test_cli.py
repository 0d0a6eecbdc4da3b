"""The newcomer's commands: ``chatprovider up`` (the whole product on one machine) and
``chatprovider check URL`` (one diagnosis per failure class the operator recognises).

``up`` runs as a real subprocess (its own control plane, operator, relay and upstream: the real
llama-server by default, the dev server, or a DevServer given as a URL); a busy port is refused
in one line by ``up``, ``run`` and ``relay``;
``check`` runs in-process through click's runner against DevServers on loopback.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import trustme
from click.testing import CliRunner, Result

from chatprovider.cli import main
from chatprovider.cli.main import commands
from chatprovider_tools.controlplane import find_binaries
from chatprovider_tools.devserver import DevServer

VENV_BIN = Path(sys.executable).parent
CHATPROVIDER = str(VENV_BIN / "chatprovider")
DEMO_ANSWER = re.compile(r"^Hello from (\S+)! This is a deterministic reply\.$", re.M)


# ---- chatprovider up ---------------------------------------------------------------------------

def _processes_with(marker: str) -> list[str]:
    """Live processes whose environment carries ``marker`` (everything `up` started does)."""
    found = []
    needle = marker.encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            if needle in environ:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"{pid}: {cmdline.decode(errors='replace')[:120]}")
        except OSError:  # gone, or not ours to read
            continue
    return found


def _run_up(*args: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess[str], str]:
    marker = f"CHATPROVIDER_TEST_UP={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1], "NO_COLOR": "1"}
    proc = subprocess.run([CHATPROVIDER, "up", "--once", "--relay-port", "0", *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    return proc, marker


def _assert_cleaned_up(proc: subprocess.CompletedProcess[str], marker: str) -> None:
    deadline = time.monotonic() + 10  # SIGKILLed children may take a moment to be reaped
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"processes left behind by `chatprovider up`: {left}"
    kubeconfig = re.search(r"export KUBECONFIG=(\S+)", proc.stdout)
    assert kubeconfig, proc.stdout
    assert not Path(kubeconfig.group(1)).parent.exists(), "the control plane's files remain"
    base = re.search(r"export OPENAI_BASE_URL=http://127\.0\.0\.1:(\d+)/v1", proc.stdout)
    assert base, proc.stdout
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(base.group(1))), 1):
        pass  # the relay no longer listens
    assert "stopped; everything cleaned up" in proc.stderr


def _eval_tokens(llama_log: Path) -> list[int]:
    """Completion tokens of each request, from llama-server's own log (``print_timing``)."""
    return [int(n) for n in re.findall(r"(?<!prompt )eval time = +[\d.]+ ms / +(\d+) tokens",
                                       llama_log.read_text(errors="replace"))]


class _Up:
    """``chatprovider up`` left running (no --once): its output read as it comes."""

    def __init__(self, *args: str) -> None:
        self.marker = f"CHATPROVIDER_TEST_UP={uuid.uuid4().hex}"
        env = {**os.environ, self.marker.split("=")[0]: self.marker.split("=")[1],
               "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([CHATPROVIDER, "up", "--relay-port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, stdin=subprocess.DEVNULL)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                         for stream, into in ((self.proc.stdout, self.out),
                                              (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr + self.stdout:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from `chatprovider up` (exit "
                                     f"{self.proc.poll()}):\n{self.stdout}\n{self.stderr}")
            time.sleep(0.1)

    def interrupt(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            for reader in self._readers:
                reader.join(10)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        return subprocess.CompletedProcess(self.proc.args, code, self.stdout, self.stderr)


def test_up_answers_with_a_real_model_behind_kubernetes_auth(tmp_path) -> None:
    llama_log = tmp_path / "llama-server.log"
    up = _Up("--upstream-log", str(llama_log))
    try:
        up.wait_for("Press Ctrl-C to stop.")
        out, err = up.stdout, up.stderr
        steps = re.findall(r"^\[(\d)/6\] ", err, re.M)
        assert steps == ["1", "2", "3", "4", "5", "6"], err
        assert "llama.cpp's llama-server with Gemma 3 270M" in err
        assert "(auth: kubernetes" in err and "chatprovider-user" in err
        # registered as the seed says: the full chat completions URL, the key in a Secret
        assert re.search(r"^demo +demo +http://127\.0\.0\.1:\d+/v1/chat/completions +True +1 ",
                         out, re.M), out
        assert "chat through the relay as demo/app with model demo/demo/gemma-3-270m:" in out
        answer = out.split("demo/demo/gemma-3-270m:\n", 1)[1].split("\nServiceAccount", 1)[0]
        assert answer.strip() and not DEMO_ANSWER.search(answer), out
        usage = re.search(r"\((\d+) prompt \+ (\d+) completion tokens, counted by the upstream",
                          err)
        assert usage, err
        # the answer came from llama-server: its own log counted the same tokens
        assert _eval_tokens(llama_log) == [int(usage.group(2))], llama_log.read_text()[-2000:]
        assert "ServiceAccount demo/stranger has no binding: the relay lists it 0 models." in out

        # what the output tells a user to run, run: a token for demo/app, then curl and the SDK
        kubeconfig = re.search(r"^  export KUBECONFIG=(/\S+/kubeconfig)$", out, re.M)
        base = re.search(r"^  export OPENAI_BASE_URL=(http://127\.0\.0\.1:\d+/v1)$", out, re.M)
        mint = re.search(r"^  export OPENAI_API_KEY=\$\((kubectl create token [^)]+)\)$", out,
                         re.M)
        assert kubeconfig and base and mint, out
        kubectl = str(find_binaries().kubectl)
        env = {**os.environ, "KUBECONFIG": kubeconfig.group(1)}

        def token(command: str) -> str:
            argv = [kubectl, *command.split()[1:]]
            return subprocess.run(argv, capture_output=True, text=True, check=True, env=env,
                                  timeout=30).stdout.strip()

        app_token = token(mint.group(1))
        with openai.OpenAI(base_url=base.group(1), api_key=app_token, max_retries=0) as client:
            assert [m.id for m in client.models.list()] == ["demo/demo/gemma-3-270m"]
            chat = client.chat.completions.create(
                model="demo/demo/gemma-3-270m", max_tokens=4,
                messages=[{"role": "user", "content": "hi"}])
            assert chat.usage and chat.usage.completion_tokens >= 1
        # that request reached the real model too (llama-server logs its timings as it frees
        # the slot, which may come a moment after the answer: waited for, not raced)
        deadline = time.monotonic() + 15
        while len(_eval_tokens(llama_log)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_eval_tokens(llama_log)) == 2, llama_log.read_text()[-2000:]
        stranger = token(mint.group(1).replace(" app ", " stranger "))
        with openai.OpenAI(base_url=base.group(1), api_key=stranger, max_retries=0) as client:
            assert list(client.models.list()) == []
            with pytest.raises(openai.PermissionDeniedError, match="may not use provider demo"):
                client.chat.completions.create(model="demo/demo/gemma-3-270m", max_tokens=4,
                                               messages=[{"role": "user", "content": "hi"}])
        with openai.OpenAI(base_url=base.group(1), api_key="not-a-token", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError):
                bad.models.list()
        assert len(_eval_tokens(llama_log)) == 2
    finally:
        proc = up.interrupt()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _assert_cleaned_up(proc, up.marker)


def test_up_with_the_dev_server_and_no_auth_streams_its_answer() -> None:
    proc, marker = _run_up("--upstream", "dev", "--relay-auth", "none")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = re.findall(r"^\[(\d)/6\] ", proc.stderr, re.M)
    assert steps == ["1", "2", "3", "4", "5", "6"], proc.stderr
    assert "Ready after" in proc.stderr and "(auth: none" in proc.stderr
    answer = DEMO_ANSWER.search(proc.stdout)
    assert answer, proc.stdout
    assert f"with model demo/demo/{answer.group(1)}:" in proc.stdout
    assert re.search(r"^  export KUBECONFIG=/\S+/kubeconfig$", proc.stdout, re.M)
    assert re.search(r"^  export OPENAI_API_KEY=unused ", proc.stdout, re.M)
    assert re.search(r"^Playground: open http://127\.0\.0\.1:\d+/ in a browser\.$", proc.stdout,
                     re.M)
    assert re.search(r"^demo +demo +http://127\.0\.0\.1:\d+/v1/chat/completions +True ",
                     proc.stdout, re.M)
    assert "stranger" not in proc.stdout
    _assert_cleaned_up(proc, marker)


def test_up_with_an_ollama_like_upstream_needs_no_key() -> None:
    with DevServer("ollama") as ollama:
        proc, marker = _run_up("--upstream", f"http://127.0.0.1:{ollama.port}",
                               "--server-type", "ollama", "--no-playground",
                               "--relay-auth", "none")
        requests = ollama.requests
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[4/6] upstream: http://127.0.0.1:{ollama.port}" in proc.stderr
    answer = DEMO_ANSWER.search(proc.stdout)
    assert answer and answer.group(1) in ollama.flavour.models, proc.stdout
    assert "Playground" not in proc.stdout
    chats = [r for r in requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 1 and chats[0].api_key is None
    assert any(r.path == "/v1/models" for r in requests)
    _assert_cleaned_up(proc, marker)


def test_up_explains_a_provider_that_does_not_become_ready() -> None:
    with socket.socket() as s:  # bound, never listening: refused, and no one else can take it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc, marker = _run_up("--upstream", f"http://127.0.0.1:{port}", "--ready-timeout", "10",
                               "--relay-auth", "none")
    assert proc.returncode == 1
    assert "not Ready yet: ConnectionRefused" in proc.stderr
    assert re.search(r"EndpointReachable\s+False\s+ConnectionRefused", proc.stderr)
    assert f"chatprovider check http://127.0.0.1:{port}" in proc.stderr
    deadline = time.monotonic() + 10
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []


def test_up_without_llama_server_says_how_to_build_it() -> None:
    proc = subprocess.run([CHATPROVIDER, "up", "--once", "--relay-port", "0"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "NO_COLOR": "1", "LLAMA_CPP_VERSION": "0.0.0-absent"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    # before anything starts
    assert proc.stderr.startswith("Error: llama.cpp's llama-server is not installed (missing "), \
        proc.stderr
    assert re.search(r"/llama-server/0\.0\.0-absent/bin/llama-server, .*\): build it with "
                     r"`make setup-demo`", proc.stderr), proc.stderr
    assert proc.stderr.count("\n") == 1


def test_up_run_and_relay_default_to_distinct_ports() -> None:
    ports = {}
    for name, command in commands().items():
        if name in ("up", "run", "relay"):
            param = next(p for p in command.params if "--relay-port" in p.opts)
            ports[name] = param.default
            text = " ".join(CliRunner().invoke(main, [name, "--help"]).output.split())
            assert re.search(rf"default: {param.default}[;\]]", text), text
    assert ports == {"up": 8180, "run": 8080, "relay": 8090}


@pytest.mark.parametrize("command", ["up", "run", "relay"])
def test_a_busy_port_is_one_line_naming_the_port_and_the_flag(command, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        extra = {"up": [], "relay": [f"--kubeconfig={tmp_path / 'none'}"],
                 "run": [f"--kubeconfig={tmp_path / 'none'}", "--health-port=0"]}[command]
        proc = subprocess.run([CHATPROVIDER, command, "--relay-port", str(port), *extra],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        f"Error: port {port} on 127.0.0.1 is already in use (another chatprovider, or another "
        f"server?): stop it, or choose another port with --relay-port PORT (0 picks a free one)")
    assert proc.stdout == ""


def test_a_busy_health_port_names_its_flag(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([CHATPROVIDER, "run", "--relay-port", "0", "--health-port",
                               str(port), f"--kubeconfig={tmp_path / 'none'}"],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"port {port} on 0.0.0.0 is already in use" in proc.stderr
    assert "--health-port PORT" in proc.stderr


def test_up_refuses_an_empty_key_variable() -> None:
    result = CliRunner().invoke(main, ["up", "--upstream", "http://127.0.0.1:1",
                                       "--api-key-env", "CHATPROVIDER_TEST_UNSET"],
                                env={"CHATPROVIDER_TEST_UNSET": ""})
    assert result.exit_code == 2
    assert "$CHATPROVIDER_TEST_UNSET is empty or unset" in result.output


# ---- chatprovider check ------------------------------------------------------------------------

def check(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["check", *args], env=env, catch_exceptions=False)


def ready_reason(result: Result) -> str:
    match = re.search(r"^  \S Ready +(\w+) ", result.output, re.M)
    assert match, result.output
    return match.group(1)


def condition(result: Result, type_: str) -> tuple[str, str]:
    """(mark, reason) of one condition line."""
    match = re.search(rf"^  (\S) {type_} +(\w+) ", result.output, re.M)
    assert match, result.output
    return match.group(1), match.group(2)


def assert_not_ready(result: Result, reason: str) -> None:
    assert result.exit_code == 1, result.output
    assert ready_reason(result) == reason
    assert f"not Ready: {reason}" in result.output
    assert "  hint: " in result.output, "every failure comes with a hint"


@pytest.fixture()
def server() -> Iterator[DevServer]:
    with DevServer("generic") as srv:
        yield srv


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_server(ca: trustme.CA, *names: str) -> DevServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names).configure_cert(ctx)
    return DevServer("generic", ssl_context=ctx)


def test_check_success(server) -> None:
    result = check(server.url)
    assert result.exit_code == 0, result.output
    assert ready_reason(result) == "Ready"
    assert condition(result, "ModelsDiscovered") == ("✔", "ModelsDiscovered")
    assert f"models: {', '.join(sorted(server.models))}" in result.output or \
        all(m in result.output for m in server.models)
    assert "Ready: 2 models offered" in result.output


def test_check_with_a_test_message(server) -> None:
    result = check(f"{server.url}/chat/completions", "--model", "devserver-chat")
    assert result.exit_code == 0, result.output
    assert condition(result, "Verified") == ("✔", "Verified")
    assert any(r.path == "/v1/chat/completions" for r in server.requests)


def test_check_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_not_ready(check(f"http://127.0.0.1:{port}"), "ConnectionRefused")


def test_check_dns_failure() -> None:
    result = check("http://no-such-host.invalid")
    assert_not_ready(result, "DNSFailure")
    assert "resolve        ✘ no-such-host.invalid" in result.output


def test_check_egress_denied() -> None:
    result = check("http://169.254.169.254")
    assert_not_ready(result, "EgressDenied")
    assert "--egress-allow" in result.output


def test_check_egress_policy_flags(server) -> None:
    assert_not_ready(check(server.url, "--egress-deny", "127.0.0.0/8"), "EgressDenied")
    assert check(server.url, "--egress-allow", "127.0.0.0/8").exit_code == 0


def test_check_tls_unknown_authority_and_ca_file(ca, tmp_path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with _tls_server(ca, "127.0.0.1", "localhost") as tls:
        result = check(tls.url)
        assert_not_ready(result, "TLSUnknownAuthority")
        assert "--ca-file" in result.output
        fixed = check(tls.url, "--ca-file", str(ca_file))
        assert fixed.exit_code == 0, fixed.output
        assert check(tls.url, "--insecure-skip-verify").exit_code == 0


def test_check_tls_hostname_mismatch(ca, tmp_path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with _tls_server(ca, "llm.example.test") as tls:
        assert_not_ready(check(tls.url, "--ca-file", str(ca_file)), "TLSHostnameMismatch")


def test_check_tls_to_a_plain_http_server(server) -> None:
    result = check(server.base_url.replace("http://", "https://"))
    assert result.exit_code == 1
    assert ready_reason(result) in {"TLSError", "ConnectionFailed"}


def test_check_timeout(server) -> None:
    server.behaviour.hang = True
    started = time.monotonic()
    result = check(server.url, "--timeout", "1s")
    assert_not_ready(result, "Timeout")
    assert time.monotonic() - started < 8


def test_check_unauthorized_and_api_key_env() -> None:
    with DevServer("vllm", api_keys={"right-key"}) as vllm:
        missing = check(vllm.url)
        assert_not_ready(missing, "Unauthorized")
        assert condition(missing, "EndpointReachable") == ("✔", "Reachable")
        assert condition(missing, "Authenticated") == ("✘", "Unauthorized")
        wrong = check(vllm.url, "--api-key-env", "KEY", env={"KEY": "wrong-key"})
        assert_not_ready(wrong, "Unauthorized")
        assert "wrong-key" not in wrong.output
        right = check(vllm.url, "--api-key-env", "KEY", env={"KEY": "right-key"})
        assert right.exit_code == 0, right.output
        assert "right-key" not in right.output
        assert condition(right, "SecretResolved") == ("✔", "SecretResolved")


def test_check_sends_no_test_message_after_a_refused_key() -> None:
    with DevServer("vllm", api_keys={"right-key"}) as vllm:
        wrong = check(vllm.url, "--model", "devserver-chat", "--api-key-env", "KEY",
                      env={"KEY": "wrong-key"})
        assert_not_ready(wrong, "Unauthorized")
        assert re.search(r"^  test message +skipped", wrong.output, re.M), wrong.output
        assert condition(wrong, "Verified") == ("?", "NotChecked")
        refused = [r.path for r in vllm.requests]
        assert refused == ["/v1/models"], refused
        vllm.clear_requests()
        # the positive control: with the right key the same command does send it
        right = check(vllm.url, "--model", vllm.flavour.models[0], "--api-key-env", "KEY",
                      env={"KEY": "right-key"})
        assert right.exit_code == 0, right.output
        paths = [r.path for r in vllm.requests]
        assert paths[:2] == ["/v1/models", "/v1/chat/completions"]
        assert sorted(paths[2:]) == [  # then the cheap probes of the other APIs
            "/v1/completions", "/v1/embeddings", "/v1/messages", "/v1/messages/count_tokens",
            "/v1/responses"]
        assert "apis: chat/completions, completions, embeddings, responses, messages, " \
               "messages/count_tokens" in right.output  # the dev server answers them all


def test_check_refuses_an_empty_key_variable(server) -> None:
    result = check(server.url, "--api-key-env", "KEY", env={"KEY": ""})
    assert result.exit_code == 2
    assert "$KEY is empty or unset" in result.output


def test_check_server_error(server) -> None:
    server.behaviour.status = 503
    assert_not_ready(check(server.url), "UpstreamServerError")


def test_check_rate_limited(server) -> None:
    server.behaviour.status = 429
    assert_not_ready(check(server.url), "RateLimited")


@pytest.mark.parametrize("fault", ["not_openai_shape", "malformed_json"])
def test_check_invalid_models_response(server, fault) -> None:
    server.behaviour.update(**{fault: True})
    assert_not_ready(check(server.url), "InvalidModelsResponse")


def test_check_models_route_not_offered(server) -> None:
    server.behaviour.models_status = 404
    result = check(server.url)
    assert_not_ready(result, "ModelsRouteNotOffered")
    assert "--static-model" in result.output
    static = check(server.url, "--static-model", "my-model", "--static-model", "other")
    assert static.exit_code == 0, static.output
    assert condition(static, "ModelsDiscovered") == ("✔", "StaticModels")
    assert condition(static, "Authenticated") == ("?", "NotVerifiable")
    assert "models: my-model, other" in static.output


def test_check_verification_failure(server) -> None:
    server.behaviour.update(not_openai_shape=True, fault_paths={"/v1/chat/completions"})
    result = check(server.url, "--model", "devserver-chat")
    assert_not_ready(result, "VerificationFailed")
    assert condition(result, "ModelsDiscovered") == ("✔", "ModelsDiscovered")
    assert condition(result, "Verified") == ("✘", "VerificationFailed")


def test_check_invalid_url() -> None:
    result = check("ftp://example.com")
    assert result.exit_code == 2
    assert "Invalid value for URL" in result.output
