"""docs/fidelity.md stays checkable: every code location and config key it cites exists, and
every registered method has a section (the reference convention: the top of that file)."""

import importlib
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from avvp.registry import available

FIDELITY = Path(__file__).resolve().parent.parent / "docs" / "fidelity.md"
# `avvp.x.y.Z` (a dotted import path) and `FILE.yaml: section.key` (FILE may hold a folder).
DOTTED = re.compile(r"`(avvp(?:\.\w+)+)`")
CONFIG_KEY = re.compile(r"`([\w/]+\.yaml): ([\w.]+)`")


def resolve_dotted(path: str) -> str | None:
    """None when ``path`` names a module or an attribute of one; otherwise why not."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and not module_name.startswith(error.name):
                return f"importing {module_name} fails: {error}"
            continue
        for depth, name in enumerate(parts[split:], split + 1):
            if not hasattr(target, name):
                return f"{'.'.join(parts[: depth - 1])} has no attribute {name!r}"
            target = getattr(target, name)
        return None
    return f"no module {parts[0]!r}"


def resolve_config_key(file: str, dotted_key: str) -> str | None:
    """None when the packaged config ``file`` (under avvp/configs) sets ``dotted_key``."""
    path = resources.files("avvp") / "configs" / file
    if not path.is_file():
        return f"no packaged config {file}"
    node = yaml.safe_load(path.read_text()) or {}
    for depth, key in enumerate(dotted_key.split(".")):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(dotted_key.split(".")[:depth]) or "the top level"
            return f"{file} has no {key!r} under {where}"
        node = node[key]
    return None


def references(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, reference, why it does not resolve or None) for every reference."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in DOTTED.finditer(line):
            found.append((number, match.group(0), resolve_dotted(match.group(1))))
        for match in CONFIG_KEY.finditer(line):
            found.append((number, match.group(0), resolve_config_key(*match.groups())))
    return found


def test_every_reference_in_the_fidelity_map_resolves():
    found = references(FIDELITY.read_text())
    assert len(found) > 100  # the map cites code throughout; an empty match means a broken regex
    broken = [f"line {number}: {ref}: {why}" for number, ref, why in found if why is not None]
    assert not broken, "docs/fidelity.md cites what no longer exists:\n" + "\n".join(broken)


def test_every_registered_method_has_a_section():
    headings = {
        line[3:].split()[0].lower()
        for line in FIDELITY.read_text().splitlines()
        if line.startswith("## ") and len(line) > 3
    }
    missing = sorted(set(available("method")) - headings)
    assert not missing, f"docs/fidelity.md has no '## NAME' section for: {', '.join(missing)}"


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("`avvp.methods.poibin.joined_tau`", None),
        ("`avvp.methods.poibin.PoiBin.on_epoch_end`", None),
        ("`avvp.losses.PROBABILITY_EPSILON`", None),
        ("`avvp.methods`", None),
        ("`avvp.methods.poibin.PoiBin.no_such_hook`", "PoiBin has no attribute 'no_such_hook'"),
        ("`avvp.methods.poibin.renamed_tau`", "poibin has no attribute 'renamed_tau'"),
        ("`avvp.no_such_module.thing`", "avvp has no attribute 'no_such_module'"),
        ("`poibin.yaml: method.tau`", None),
        ("`recipes/poibin_refine.yaml: optim.lr`", None),
        ("`base.yaml: optim.lr`", None),
        ("`poibin.yaml: optim.lr`", "poibin.yaml has no 'lr' under optim"),
        ("`poibin.yaml: method.tua`", "poibin.yaml has no 'tua' under method"),
        ("`nope.yaml: optim.lr`", "no packaged config nope.yaml"),
    ],
)
def test_the_resolver_catches_stale_references(reference, problem):
    """A renamed function, a missing attribute or a key the file does not set is reported."""
    ((number, found, why),) = references(f"a line\nthe rule is in {reference}.")
    assert (number, found) == (2, reference)
    if problem is None:
        assert why is None
    else:
        assert why is not None and problem in why
