"""The docs against the binary: fails when docs/interface.md or README.md drift.

No server is started: only `conclave --help`, each command's `--help` and
`conclave config example` are run.

* CLI: every subcommand that `conclave --help` lists, and every nested one
  (`conclave user add`, ...), must be in docs/interface.md's CLI section as
  `conclave <name> [<sub>]`, with each of its long flags on that line.
* Configuration: docs/interface.md must point to `conclave config example`
  (the generated, authoritative list), and a hand-copied TOML block, if one
  comes back, must hold every section the example has. Every setting the
  README or docs/interface.md names (`retention.days`, `[muc]`,
  `CONCLAVE_C2S__STARTTLS_PORT`, ...) must exist in the example.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib

import pytest

from harness import REPO, conclave_bin

pytestmark = pytest.mark.conclave_only

INTERFACE = REPO / "docs" / "interface.md"
README = REPO / "README.md"


def _run(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    r = subprocess.run([str(conclave_bin()), *args], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r.stdout


def _subcommands(help_text: str) -> list[str]:
    """The names under clap's `Commands:` heading (without `help`)."""
    names: list[str] = []
    in_commands = False
    for line in help_text.splitlines():
        if line.strip() == "Commands:":
            in_commands = True
            continue
        if in_commands:
            m = re.match(r"^  ([a-z][a-z0-9-]*)(\s|$)", line)
            if m:
                if m.group(1) != "help":
                    names.append(m.group(1))
            elif line.strip() and not line.startswith("   "):
                break  # the next heading (Options:)
    return names


def _long_flags(help_text: str) -> list[str]:
    """Long options under `Options:`, without the ones every command has."""
    flags = re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", help_text, re.M)
    return [f for f in flags if f not in ("--help", "--version", "--config")]


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"no '## {heading}' section in {INTERFACE}"
    return m.group(1)


def _commands() -> list[tuple[list[str], str]]:
    """Every command path, e.g. (["user"], ...), (["user", "add"], its --help text)."""
    top = _run("--help")
    names = _subcommands(top)
    # a parser that finds nothing would make every check below vacuous
    assert {"serve", "config", "user"} <= set(names), top
    out = []
    for name in names:
        h = _run(name, "--help")
        out.append(([name], h))
        for sub in _subcommands(h):
            out.append(([name, sub], _run(name, sub, "--help")))
    return out


def test_every_command_is_in_interface_md():
    cli = _section(INTERFACE.read_text(), "CLI")
    missing, flagless = [], []
    for path, help_text in _commands():
        cmd = "conclave " + " ".join(path)
        # `conclave user add` must not be satisfied by `conclave user add-bulk`
        pattern = re.compile(r"`" + re.escape(cmd) + r"(?=[\s`\[])")
        lines = [ln for ln in cli.splitlines() if pattern.search(ln)]
        if not lines:
            missing.append(cmd)
            continue
        # a command's entry may wrap onto indented continuation lines
        entry = "\n".join(
            _entry_from(cli.splitlines(), i) for i, ln in enumerate(cli.splitlines()) if pattern.search(ln)
        )
        for flag in _long_flags(help_text):
            if not re.search(re.escape(flag) + r"(?![a-z0-9-])", entry):
                flagless.append(f"{cmd} {flag}")
    assert not missing, f"commands missing from docs/interface.md's CLI section: {missing}"
    assert not flagless, f"flags missing from their command's entry in docs/interface.md: {flagless}"


def _entry_from(lines: list[str], i: int) -> str:
    """A list item and its indented continuation lines."""
    out = [lines[i]]
    for ln in lines[i + 1 :]:
        if ln.startswith("  ") and not ln.lstrip().startswith("- "):
            out.append(ln)
        else:
            break
    return "\n".join(out)


def _example() -> tuple[str, dict]:
    text = _run("config", "example")
    return text, tomllib.loads(text)


def _sections(text: str) -> set[str]:
    """`[name]` and `[[name]]` headers (commented-out ones and trailing comments too)."""
    return set(re.findall(r"^[#\s]*\[\[?([a-z_][a-z0-9_.]*)\]\]?\s*(?:#.*)?$", text, re.M))


def test_interface_md_defers_to_config_example():
    doc = INTERFACE.read_text()
    config = _section(doc, "Configuration")
    assert "`conclave config example`" in config, (
        "docs/interface.md's Configuration section must point to `conclave config example`"
    )
    text, _ = _example()
    want = _sections(text)
    assert {"c2s", "http", "limits"} <= want, text
    # A hand-copied configuration drifts (it once lacked [invites], [retention],
    # [archive], [muc], [upload] and [components]): if one is back, it is whole.
    for block in re.findall(r"```toml\n(.*?)```", doc, re.S):
        have = _sections(block)
        if have:
            assert want <= have, f"the TOML block in docs/interface.md lacks {sorted(want - have)}"


def _known_keys(cfg: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in cfg.items():
        keys.add(prefix + k)
        if isinstance(v, dict):
            keys |= _known_keys(v, prefix + k + ".")
    return keys


def test_settings_named_in_docs_exist():
    text, cfg = _example()
    keys = _known_keys(cfg) | _sections(text)
    sections = {k for k, v in cfg.items() if isinstance(v, dict)}
    # upload.localhost and the like are service domains, not settings
    hosts = set(cfg.get("hosts", []))
    wrong = []
    for doc in (README, INTERFACE):
        body = doc.read_text()
        for code in re.findall(r"`([^`\n]+)`", body):
            # section.key (or section.*) in code spans
            for sec, key in re.findall(r"(?<![\w./<-])([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*|\*)(?![\w.<>/-])", code):
                if sec in sections and key not in hosts and key != "*" and f"{sec}.{key}" not in keys:
                    wrong.append(f"{doc.name}: {sec}.{key}")
            # [section] and [[section.list]]
            for name in re.findall(r"^\[\[?([a-z_][a-z0-9_.]*)\]\]?$", code):
                if name not in keys:
                    wrong.append(f"{doc.name}: [{name}]")
        # CONCLAVE_SECTION__KEY=... and CONCLAVE_KEY=...
        for var in set(re.findall(r"\bCONCLAVE_([A-Z0-9_]+)=", body)):
            key = var.lower().replace("__", ".")
            if key not in keys:
                wrong.append(f"{doc.name}: CONCLAVE_{var}")
    assert not wrong, f"settings named in the docs that `conclave config example` does not have: {wrong}"
