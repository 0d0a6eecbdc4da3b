from __future__ import annotations

import pytest

from chatprovider.domain.proxy import bypasses_proxy, proxy_for

PROXY = "http://proxy.corp:3128"


@pytest.mark.parametrize(("host", "rules", "direct"), [
    ("vllm.corp.example", [".corp.example"], True),
    ("vllm.corp.example", ["corp.example"], True),
    ("corp.example", [".corp.example"], True),
    ("evilcorp.example", ["corp.example"], False),
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("11.1.2.3", ["10.0.0.0/8"], False),
    ("::1", ["::1/128"], True),
    ("anything", ["*"], True),
    ("api.openai.com", [], False),
    ("Host.Example.", ["host.example"], True),
])
def test_no_proxy_rules(host, rules, direct):
    assert bypasses_proxy(host, rules) is direct
    assert proxy_for(host, PROXY, rules) == (None if direct else PROXY)


def test_no_proxy_without_proxy():
    assert proxy_for("x", None, []) is None
