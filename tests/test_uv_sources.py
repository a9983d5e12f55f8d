"""tools/uv_sources.py: pip's package sources handed to uv, read from ``pip config list`` output."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("uv_sources", Path(__file__).parents[1] / "tools" / "uv_sources.py")
uv_sources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(uv_sources)


def test_pip_settings_become_uv_flags_once_each():
    listing = "\n".join([
        ":env:.cert='/etc/ssl/certs/ca-certificates.crt'",
        ":env:.find-links='/opt/wheels'",
        "global.constraint='/etc/pip/constraints.txt'",
        "global.extra-index-url='file:///a/simple file:///b/simple'",
        "global.find-links='/opt/wheels'",  # the same folder in two scopes: passed once
        "global.timeout='60'",
    ])
    assert uv_sources.uv_flags(listing) == [
        "--find-links", "/opt/wheels", "--constraint", "/etc/pip/constraints.txt",
        "--extra-index-url", "file:///a/simple", "--extra-index-url", "file:///b/simple",
        "--index-strategy", "unsafe-best-match"]


def test_no_pip_sources_means_no_flags_and_an_index_alone_keeps_uvs_strategy():
    assert uv_sources.uv_flags("") == []
    assert uv_sources.uv_flags(":env:.cert='/x.pem'\nglobal.timeout='60'") == []
    assert uv_sources.uv_flags("global.index-url='https://mirror.example/simple'") == [
        "--index-url", "https://mirror.example/simple"]


def test_install_uses_uv_with_pips_sources_and_pip_without_uv(tmp_path):
    import sys

    uv = tmp_path / "uv"
    listing = "global.find-links='/opt/wheels'"
    assert uv_sources.install_command(["-e", ".[test]"], uv, listing)[:3] == [sys.executable, "-m", "pip"]
    uv.write_text("#!/bin/sh\n")
    uv.chmod(0o755)
    command = uv_sources.install_command(["-e", ".[test]"], uv, listing)
    # no installer byte-compiles all 17,300 files: tools/warm_bytecode.py compiles what is imported
    assert command[:3] == [str(uv), "pip", "install"] and "--compile-bytecode" not in command
    assert "--no-compile" in uv_sources.install_command(["x"], None, listing)
    assert command[-6:] == ["--find-links", "/opt/wheels", "--index-strategy", "unsafe-best-match", "-e", ".[test]"]
