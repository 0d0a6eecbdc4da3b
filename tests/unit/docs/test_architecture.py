"""docs/architecture.md stays true: every module and name it points to exists, and the layers it
draws are the ones import-linter enforces."""

from __future__ import annotations

import configparser
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PAGE = (ROOT / "docs" / "architecture.md").read_text()
LAYERS = ("cli", "controller", "relay", "feed", "watch", "kube", "upstream", "counters",
          "registry", "settings", "logs", "domain", "api")


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module("chatprovider." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_name_the_page_points_to_exists() -> None:
    names = {m for m in re.findall(r"`([a-z_]+(?:\.[A-Za-z_]+)+)`", PAGE)
             if m.split(".")[0] in LAYERS and not m.endswith(".py")}
    assert len(names) > 20
    for name in sorted(names):
        _resolve(name)  # raises on a stale name


def test_the_layers_drawn_are_the_enforced_ones() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    enforced = [line.strip().replace("chatprovider.", "")
                for line in config["importlinter:contract:layers"]["layers"].splitlines()
                if line.strip()]
    drawn = [line.split("  ")[0].strip() for line in
             PAGE.split("```\n", 2)[1].splitlines() if line.strip()]
    assert drawn == enforced
