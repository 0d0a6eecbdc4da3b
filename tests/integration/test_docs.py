"""The commands in the docs work: each page's blocks run, in order, against a real cluster.

For every page in :data:`DOCS`, a fresh control plane gets what an installation has (the CRD
applied with ``chatprovider crd``, the user ClusterRole the Helm chart creates, the operator with
its relay, Kubernetes authentication on) and stand-ins for the servers the pages talk about
(:class:`Upstreams`: DevServers that look like vLLM, Ollama, TGI, LiteLLM and OpenAI). The
page's blocks then run in one bash session, as a reader would type them, so that ``export``\\s
carry over from block to block:

* ``console``: the ``$ `` lines (with ``\\`` continuations and here-documents); other lines are
  output, not checked;
* ``bash`` / ``sh``: the whole block; ``python``: the block, with the venv's Python;
* ``javascript``: the block as an ES module, with Node.js and the OpenAI SDK that
  ``scripts/install-node-clients.sh`` installs (a missing one fails the page, never skips it);
* ``yaml``: written to a file when preceded by ``<!-- file: NAME -->`` (a later block applies it);
  otherwise resources are validated with ``kubectl apply --dry-run=server``, a fragment with a
  top-level ``spec:`` as a ChatProvider's spec, and anything else must parse.

The in-cluster addresses the pages use (:meth:`Upstreams.urls`) are replaced by the stand-ins'
before running, and back in the output before it is matched. Directives, as HTML comments right
before a block (invisible on GitHub):

* ``<!-- not-tested: REASON -->``: skip it (every runnable block needs a reason to be skipped);
* ``<!-- file: NAME -->``: see ``yaml`` above;
* ``<!-- expect: REGEX -->``: the block's output must match (``re.M``);
* ``<!-- expect-exit: N -->``: its last command must exit with N (0 is required otherwise).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from tests.integration.operator_stack import OperatorStack

from chatprovider.relay import AuthMode, RelaySettings
from chatprovider_tools.controlplane import ControlPlane
from chatprovider_tools.devserver import DevServer

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [ROOT / "docs" / name for name in (
        "concepts.md", "sharing.md", "clients.md", "troubleshooting.md", "configuration.md",
        "upgrading.md")]
    + list((ROOT / "docs" / "recipes").glob("*.md"))
    + [ROOT / "docs" / "reference" / "chatprovider.md"]
)
RUNNABLE = {"console", "bash", "sh", "shell", "python", "yaml", "javascript", "js"}
VENV_BIN = Path(sys.executable).parent
NODE_MODULES = Path(os.environ.get("CHATPROVIDER_CACHE") or Path.home() / ".cache" / "chatprovider"
                    ) / "node-clients" / "node_modules"
KEYS = {"VLLM_API_KEY": "vllm-key-for-docs", "LITELLM_API_KEY": "sk-litellm-virtual-key",
        "OPENAI_API_KEY": "sk-openai-key-for-docs"}
#: What the Helm chart installs besides the operator and the CRD, and the docs rely on
#: (charts/chatprovider-operator/templates/user-roles.yaml).
CHART_USER_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: chatprovider-user}
rules:
- apiGroups: [ai.chatprovider.dev]
  resources: [chatproviders]
  verbs: [use]
- apiGroups: [ai.chatprovider.dev]
  resources: [chatmodels]
  verbs: [use]
"""


# ---- the pages' blocks -------------------------------------------------------------------------

@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    directives: dict[str, list[str]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def directive(self, name: str) -> str | None:
        values = self.directives.get(name)
        return values[-1] if values else None


def parse_blocks(path: Path) -> list[Block]:
    """Fenced code blocks of a Markdown page, with the directives right before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(```+)(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        indent, ticks, lang = fence.groups()
        directives: dict[str, list[str]] = {}
        j = i - 1
        while j >= 0 and (m := re.match(r"^\s*<!--\s*([\w-]+):\s*(.*?)\s*-->\s*$", lines[j])):
            directives.setdefault(m.group(1), []).insert(0, m.group(2))
            j -= 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^\s*{ticks}\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        blocks.append(Block(path, i - len(body), lang.lower(), "\n".join(body) + "\n",
                            directives))
        i += 1
    return blocks


def console_commands(text: str) -> list[str]:
    """The commands of a console block: ``$ `` lines, continuations and here-documents."""
    lines, commands, i = text.splitlines(), [], 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = [lines[i][2:]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", "\n".join(command))
        if heredoc:
            while i + 1 < len(lines):
                i += 1
                command.append(lines[i])
                if lines[i].strip() == heredoc.group(1):
                    break
        commands.append("\n".join(command))
        i += 1
    return commands


def _heredoc(command: str, text: str, tag: str = "CHATPROVIDER_DOC_EOF") -> str:
    return f"{command} <<'{tag}'\n{text.rstrip()}\n{tag}"


def block_script(block: Block) -> str | None:
    """The shell commands that exercise a block (None: nothing to run, e.g. a YAML fragment)."""
    lang, text = block.lang, block.text
    if lang == "console":
        commands = console_commands(text)
        return "\n".join(commands) if commands else None
    if lang in ("bash", "sh", "shell"):
        return text.rstrip()
    if lang == "python":
        return _heredoc("python -", text)
    if lang in ("javascript", "js"):
        return _heredoc("node --input-type=module -", text)
    if lang == "yaml":
        docs = [d for d in yaml.safe_load_all(text) if d is not None]  # must parse, in any case
        name = block.directive("file")
        if name:
            return _heredoc(f"cat > {name}", text)
        if any(isinstance(d, dict) and "kind" in d for d in docs):
            return _heredoc("kubectl apply --dry-run=server -f -", text)
        if len(docs) == 1 and isinstance(docs[0], dict) and set(docs[0]) == {"spec"}:
            wrapped = yaml.safe_dump({"apiVersion": "ai.chatprovider.dev/v1alpha1",
                                      "kind": "ChatProvider", "metadata": {"name": "fragment"},
                                      **docs[0]})
            return _heredoc("kubectl apply --dry-run=server -f -", wrapped)
        return None
    return None


# ---- the cluster and the servers the pages talk about ------------------------------------------

class Upstreams:
    """Stand-ins for the servers of the docs, and the addresses the docs give them."""

    def __init__(self) -> None:
        self.vllm = DevServer("vllm", api_keys={KEYS["VLLM_API_KEY"]})
        # the upgraded vLLM of the blue/green recipe (docs/recipes/blue-green.md)
        self.vllm_next = DevServer("vllm", api_keys={KEYS["VLLM_API_KEY"]})
        self.ollama = DevServer("ollama")
        self.tgi = DevServer("tgi")
        self.tgi.behaviour.models_status = 404  # a TGI without GET /v1/models
        self.litellm = DevServer("generic", api_keys={KEYS["LITELLM_API_KEY"]},
                                 models=["gpt-4o-mini", "claude-3-5-haiku", "llama3-local"])
        self.openai = DevServer("generic", api_keys={KEYS["OPENAI_API_KEY"]},
                                models=["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"])
        self.all = [self.vllm, self.vllm_next, self.ollama, self.tgi, self.litellm, self.openai]

    def __enter__(self) -> Upstreams:
        for server in self.all:
            server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.all:
            server.stop()

    def urls(self, relay_base: str) -> dict[str, str]:
        """Address in the docs → address here."""
        return {
            "http://chatprovider-operator-relay.chatprovider-system:8080": relay_base,
            "http://vllm.ml:8000": self.vllm.base_url,
            "http://vllm-next.ml:8000": self.vllm_next.base_url,
            "http://ollama.ml:11434": self.ollama.base_url,
            "http://tgi.ml:8080": self.tgi.base_url,
            "http://litellm.ml:4000": self.litellm.base_url,
            "https://api.openai.com": self.openai.base_url,
        }


@dataclass
class Cluster:
    plane: ControlPlane
    env: dict[str, str]
    urls: dict[str, str]
    workdir: Path


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh control plane with the CRD, the chart's user role, the operator and its relay."""
    plane = ControlPlane().start()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.pathsep.join([str(VENV_BIN), str(plane.binaries.kubectl.parent),
                                 str(Path(shutil.which("node") or "/usr/bin/node").parent),
                                 str(NODE_MODULES / ".bin"),  # claude
                                 "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home), "KUBECONFIG": str(plane.kubeconfig), "LANG": "C.UTF-8",
        "LANGSMITH_TRACING": "false", **KEYS,
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]

    def sh(script: str, input: str | None = None) -> str:
        proc = subprocess.run(["bash", "-eo", "pipefail", "-c", script], input=input, env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{script}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    try:
        # every CRD of the release (the relay is ready once it has listed quotas and models)
        sh("chatprovider crd | kubectl apply --server-side -f -")
        sh("kubectl wait --for=condition=Established crd/chatproviders.ai.chatprovider.dev"
           " crd/chatquotas.ai.chatprovider.dev crd/chatmodels.ai.chatprovider.dev")
        sh("kubectl apply -f -", input=CHART_USER_ROLE)
        deadline = time.monotonic() + 30
        while True:  # discovery (kubectl's cache in $HOME) may lag behind Established
            try:
                sh("kubectl get chatproviders,chatquotas,chatmodels -A")
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        settings = RelaySettings(port=0, auth_mode=AuthMode.KUBERNETES, playground=True)
        with Upstreams() as upstreams, OperatorStack(plane.kubeconfig, settings) as stack:
            workdir = tmp_path / "work"
            workdir.mkdir()
            yield Cluster(plane, env, upstreams.urls(stack.base), workdir)
    finally:
        plane.stop()


# ---- running a page ----------------------------------------------------------------------------

def substitute(text: str, urls: dict[str, str], reverse: bool = False) -> str:
    pairs = sorted(urls.items(), key=lambda kv: -len(kv[1] if reverse else kv[0]))
    for doc_url, real_url in pairs:
        text = text.replace(real_url, doc_url) if reverse else text.replace(doc_url, real_url)
    return text


def page_script(blocks: list[tuple[int, Block, str]], out: Path) -> str:
    trap = f"trap 'echo \"$CHATPROVIDER_DOC_BLOCK\" > {out}/failed' ERR"
    parts = ["set -eo pipefail", trap]
    for n, block, script in blocks:
        target = f"> {out}/{n}.out 2>&1"
        parts.append(f"CHATPROVIDER_DOC_BLOCK={n}  # {block.where}")
        if block.directive("expect-exit") is not None:  # bash runs ERR traps even with set +e
            parts += ["trap - ERR", "set +e", f"{{\n{script}\n}} {target}",
                      f"echo $? > {out}/{n}.rc", "set -e", trap]
        else:
            parts.append(f"{{\n{script}\n}} {target}")
    return "\n".join(parts) + "\n"


def node_modules_for(workdir: Path) -> None:
    """Let ``import "openai"`` in a page's JavaScript resolve (Node looks in ./node_modules)."""
    assert shutil.which("node"), "Node.js is needed for the JavaScript examples: make setup"
    assert (NODE_MODULES / "openai" / "package.json").exists(), \
        f"the OpenAI JavaScript SDK is not in {NODE_MODULES}: make setup " \
        "(scripts/install-node-clients.sh)"
    (workdir / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)


def run_page(path: Path, cluster: Cluster) -> list[str]:
    """Run a page's blocks; return the problems found (empty: all good)."""
    planned: list[tuple[int, Block, str]] = []
    for n, block in enumerate(parse_blocks(path)):
        if block.directive("not-tested") is not None or block.lang not in RUNNABLE:
            continue
        script = block_script(block)
        if script is not None:
            planned.append((n, block, substitute(script, cluster.urls)))
    if not planned:
        return []
    if any(block.lang in ("javascript", "js") for _, block, _ in planned):
        node_modules_for(cluster.workdir)
    if any(re.search(r"^claude ", script, re.M) for _, _, script in planned):
        assert (NODE_MODULES / ".bin" / "claude").exists(), \
            f"Claude Code is not in {NODE_MODULES}: make setup (scripts/install-node-clients.sh)"
    out = cluster.workdir / "out"
    out.mkdir()
    proc = subprocess.run(["bash", "-c", page_script(planned, out)], env=cluster.env,
                          cwd=cluster.workdir, capture_output=True, text=True, timeout=600)

    def output(n: int) -> str:
        file = out / f"{n}.out"
        return substitute(file.read_text(errors="replace"), cluster.urls, reverse=True) \
            if file.exists() else ""

    problems = []
    failed = (out / "failed").read_text().strip() if (out / "failed").exists() else None
    for n, block, script in planned:
        if failed == str(n) or (failed is None and proc.returncode != 0 and n == planned[-1][0]):
            problems.append(f"{block.where}: failed (exit {proc.returncode})\n--- ran:\n"
                            f"{script}\n--- output:\n{output(n)}{proc.stderr}")
            break
        expected_rc = block.directive("expect-exit")
        if expected_rc is not None:
            rc = (out / f"{n}.rc").read_text().strip()
            if rc != expected_rc:
                problems.append(f"{block.where}: exit {rc}, expected {expected_rc}\n"
                                f"{output(n)}")
        for pattern in block.directives.get("expect", []):
            if not re.search(pattern, output(n), re.M):
                problems.append(f"{block.where}: output does not match {pattern!r}:\n"
                                f"{output(n)}")
    return problems


# ---- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_the_commands_of_the_page_work(path: Path, cluster: Cluster) -> None:
    problems = run_page(path, cluster)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_every_runnable_block_runs_or_says_why_not(path: Path) -> None:
    blocks = parse_blocks(path)
    runnable = [b for b in blocks if b.lang in RUNNABLE]
    skipped = [b for b in runnable if b.directive("not-tested") is not None]
    for block in skipped:
        assert len(block.directive("not-tested") or "") > 10, f"{block.where}: give a reason"
    for block in runnable:
        for pattern in block.directives.get("expect", []):
            re.compile(pattern)
    assert len(skipped) <= max(2, len(runnable) // 3), \
        f"{path.name}: {len(skipped)} of {len(runnable)} blocks are not tested"
    assert all(b.lang for b in blocks if "$ " in b.text), "a command block without a language"


def test_docs_link_to_files_that_exist() -> None:
    pages = [*DOCS, ROOT / "docs" / "relay.md", ROOT / "README.md"]
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text("utf-8"), flags=re.S)  # code blocks
        text = re.sub(r"``.*?``|`[^`\n]*`", "", text)  # code spans
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} -> {target}"


def test_the_parser_reads_directives_commands_and_heredocs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text\n\n<!-- expect-exit: 1 -->\n<!-- expect: ^no$ -->\n```console\n"
        "$ kubectl auth can-i x \\\n    --as=y\nno\n$ kubectl apply -f - <<'EOF'\nkind: X\nEOF\n"
        "output\n```\n\n<!-- not-tested: a reason -->\n```bash\necho hi\n```\n")
    first, second = parse_blocks(page)
    assert first.directives == {"expect-exit": ["1"], "expect": ["^no$"]}
    assert console_commands(first.text) == [
        "kubectl auth can-i x \\\n    --as=y", "kubectl apply -f - <<'EOF'\nkind: X\nEOF"]
    assert second.directive("not-tested") == "a reason" and second.lang == "bash"
    assert shutil.which("bash")
