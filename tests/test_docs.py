"""The README and docs/*.md: valid TOML, no hand-typed numbers in the README, links that resolve.

What is checked, and the rules behind it:

* **TOML snippets parse.** Every ```toml block of README.md and docs/*.md parses with
  :mod:`tomllib`, and so does every commented-out assignment in one (``# key = value``,
  uncommented on its own line), so a reader who uncomments an alternative gets valid TOML.

* **No number in the README is typed by hand.** Numbers about the default spec are generated:
  the table between ``<!-- BEGIN generated from experiments/default.toml`` and
  ``<!-- END generated -->`` must equal :func:`default_spec_table`, which reads
  ``experiments/default.toml`` (rewrite it with ``python -m tests.test_docs``). Everywhere else,
  outside fenced code blocks, link targets and HTML comments, the README may state no number:
  a digit that does not continue a word (``fp32``, ``top1``, ``sha256`` are words; ``256``,
  ``3.11``, ``SHA-256``, ``10x`` are numbers) fails the test unless it sits in an allowed phrase
  of :data:`PROSE_ALLOWED` (a version the install pins, or the archive caps sentence, which is
  generated from ``nas.artifacts.safe_archive.DEFAULT_LIMITS`` itself). Inline code is held to
  the same rule, except that a span ``section.key = value`` (or ``key = value`` for a key that
  only one table of the spec has, e.g. ``epochs = 6``) is allowed when the value is what
  ``experiments/default.toml`` sets. Prose cites spec keys instead (``measure.n_samples``); every
  such ``section.key`` span, in the README and in docs/*.md, must be a key of docs/spec.md (the
  generated key reference), so a renamed key breaks the citation. Fenced blocks are exempt
  because each kind is checked elsewhere: ```bash blocks are run by
  tests/test_readme_commands.py, the HTTP ```python example by tests/test_service_transfer.py,
  ```toml blocks here (where a README block may not restate a generated key with another value);
  plain blocks are other tools' command lines. Measured numbers belong in docs/measured.md or
  benchmarks/, with their dates, never in the README.

* **Links resolve.** Every relative Markdown link in README.md and docs/*.md names an existing
  file inside the repository, and a ``#fragment`` on a Markdown file names one of its headings
  (GitHub's heading ids).

* **The README stays short**: under 200 lines.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from nas.artifacts.safe_archive import DEFAULT_LIMITS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DEFAULT_SPEC = REPO / "experiments" / "default.toml"
SPEC_REFERENCE = REPO / "docs" / "spec.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_README_LINES = 200

# The default spec's keys the README shows, with what each sets (words only: the values come
# from experiments/default.toml).
TABLE_KEYS: dict[str, str] = {
    "data.train_size": "training images, a seeded stratified subset",
    "data.val_size": "validation images: every accuracy the search and selection see",
    "data.calib_size": "images for BatchNorm re-calibration only",
    "train.epochs": "supernet training epochs",
    "measure.n_samples": "subnets measured for real to fit and test the predictors",
    "search.objectives": "what the front trades",
    "search.budget": "evaluations the searcher makes (on predicted metrics)",
    "export.max_subnets": "most front subnets exported",
}
BEGIN = (
    "<!-- BEGIN generated from experiments/default.toml by `python -m tests.test_docs`; "
    "do not edit -->"
)
END = "<!-- END generated -->"
# Phrases of README prose that may hold digits: versions the install needs, and the archive
# caps, which come from the code that enforces them.
PROSE_ALLOWED: tuple[str, ...] = ("Python 3.11", "Apache-2.0", DEFAULT_LIMITS.describe())
# Inline code spans that may hold digits (none today: add one only for a fixed fact such as a
# pinned version, never for a spec value or a measurement).
INLINE_ALLOWED: frozenset[str] = frozenset()
SPEC_SECTIONS = ("space", "data", "train", "ray", "measure", "predictors", "search", "export")
NUMBER = re.compile(r"(?<![A-Za-z_\d])\d+(?:[.,]\d+)*")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


# -- helpers ---------------------------------------------------------------------------------
def _fenced(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def _without_fences(text: str) -> str:
    return FENCE.sub("", text)


def _inline_code(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def _default_spec() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_SPEC.read_text(encoding="utf-8"))


def _lookup(spec: dict[str, Any], dotted: str) -> Any:
    value: Any = spec
    for part in dotted.split("."):
        value = value[part]
    return value


def toml_value(value: Any) -> str:
    """A value as TOML writes it (the subset the spec uses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML rendering for {value!r}")


def default_spec_table() -> str:
    """The README's generated table of the default spec, markers included."""
    spec = _default_spec()
    rows = [BEGIN, "| key | value | what it sets |", "|---|---|---|"]
    for key, meaning in TABLE_KEYS.items():
        rows.append(f"| `{key}` | `{toml_value(_lookup(spec, key))}` | {meaning} |")
    rows.append(END)
    return "\n".join(rows)


def _generated_block(text: str) -> str:
    start = text.index(BEGIN)
    return text[start : text.index(END, start) + len(END)]


def _spec_reference_keys() -> set[str]:
    """Every key docs/spec.md documents, as ``section.key`` (top-level keys bare)."""
    keys, section = set(), ""
    for line in SPEC_REFERENCE.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## (?:\[\[(\w+)\]\]|\[(\w+)\]|.*)$", line)
        if heading:
            section = heading.group(1) or heading.group(2) or ""
            continue
        row = re.match(r"^\| `(\w+)` \|", line)
        if row:
            keys.add(f"{section}.{row.group(1)}" if section else row.group(1))
    return keys


def _slug(heading: str) -> str:
    """GitHub's id for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in _without_fences(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6} +(.+?) *#*$", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _prose(text: str) -> str:
    """README text a reader sees as prose: no fences, generated block, comments or URLs."""
    text = text.replace(_generated_block(text), "")
    text = _without_fences(text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"<?https?://\S+", "", text)
    return text


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# -- (a) TOML --------------------------------------------------------------------------------
TOML_BLOCKS = [
    pytest.param(path, body, id=f"{_rel(path)}#{i}")
    for path in DOCS
    for i, (lang, body) in enumerate(
        b for b in _fenced(path.read_text(encoding="utf-8")) if b[0] == "toml"
    )
]


def test_docs_have_toml_snippets() -> None:
    assert any(param.values[0] == README for param in TOML_BLOCKS)


@pytest.mark.parametrize(("path", "body"), TOML_BLOCKS)
def test_toml_snippet_parses(path: Path, body: str) -> None:
    try:
        tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{_rel(path)}: a ```toml block is not valid TOML ({exc}):\n{body}")
    for line in body.splitlines():
        commented = line.strip().removeprefix("#").strip()
        if line.strip().startswith("#") and re.match(r"^[A-Za-z_][\w.\-]*\s*=", commented):
            try:
                tomllib.loads(commented)
            except tomllib.TOMLDecodeError as exc:
                pytest.fail(f"{_rel(path)}: uncommented, {line.strip()!r} is not TOML ({exc})")


def test_readme_toml_does_not_restate_generated_keys_differently() -> None:
    spec = _default_spec()
    for lang, body in _fenced(README.read_text(encoding="utf-8")):
        if lang != "toml":
            continue
        snippet = tomllib.loads(body)
        for key in TABLE_KEYS:
            try:
                value = _lookup(snippet, key)
            except (KeyError, TypeError):
                continue
            assert value == _lookup(spec, key), f"README sets {key} = {value!r}: not the default"


# -- (b) numbers -----------------------------------------------------------------------------
def test_readme_spec_table_is_generated_from_the_default_spec() -> None:
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "the README lost its generated table of the default spec"
    assert _generated_block(text) == default_spec_table(), (
        "the README's table of the default spec differs from experiments/default.toml; "
        "rewrite it with `python -m tests.test_docs`"
    )


def test_readme_prose_states_no_number() -> None:
    prose = _prose(README.read_text(encoding="utf-8"))
    for span in _inline_code(prose):
        prose = prose.replace(f"`{span}`", " ", 1)
    flat = " ".join(prose.split())
    for phrase in PROSE_ALLOWED:
        flat = flat.replace(phrase, " ")
    found = [
        (m.group(), flat[max(0, m.start() - 40) : m.end() + 40]) for m in NUMBER.finditer(flat)
    ]
    assert not found, (
        "the README states numbers by hand; cite the spec key (e.g. `measure.n_samples`) or "
        "link to docs/measured.md instead:\n" + "\n".join(f"  {n!r} in …{c}…" for n, c in found)
    )


def _spec_key(spec: dict[str, Any], key: str) -> str | None:
    """``key`` as a dotted key of the default spec: itself, or the one table key of that name."""
    if key.split(".")[0] in SPEC_SECTIONS:
        return key
    if "." in key:
        return None
    if key in spec and not isinstance(spec[key], dict | list):
        return key
    owners = [
        f"{name}.{key}" for name, table in spec.items() if isinstance(table, dict) and key in table
    ]
    return owners[0] if len(owners) == 1 else None


def test_readme_inline_code_states_no_number_but_the_spec_s() -> None:
    spec = _default_spec()
    for span in _inline_code(_prose(README.read_text(encoding="utf-8"))):
        assignment = re.fullmatch(r"([A-Za-z_][\w.]*)\s*=\s*(.+)", span)
        key = _spec_key(spec, assignment.group(1)) if assignment else None
        if assignment and key:
            try:
                value = _lookup(spec, key)
            except KeyError:
                pytest.fail(f"README: `{span}` names a key experiments/default.toml does not set")
            assert tomllib.loads(f"v = {assignment.group(2)}")["v"] == value, (
                f"README: `{span}`, but experiments/default.toml sets {key} = {toml_value(value)}"
            )
            continue
        if span not in INLINE_ALLOWED:
            assert not NUMBER.search(span), f"README: `{span}` states a number by hand"


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_cited_spec_keys_exist(path: Path) -> None:
    if path == SPEC_REFERENCE:
        return
    known = _spec_reference_keys()
    assert "measure.n_samples" in known, "docs/spec.md no longer parses as expected"
    text = _without_fences(path.read_text(encoding="utf-8"))
    for span in _inline_code(text):
        key = re.fullmatch(rf"((?:{'|'.join(SPEC_SECTIONS)})\.\w+)(?:\s*=.*)?", span)
        if key:
            assert key.group(1) in known, f"{_rel(path)}: `{span}` is not a key of docs/spec.md"


# -- (c) links -------------------------------------------------------------------------------
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_relative_links_resolve(path: Path) -> None:
    text = _without_fences(path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]+`", "", text)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.\-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if REPO not in (resolved, *resolved.parents) or not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target} (no heading #{fragment} in {_rel(resolved)})")
    assert not broken, f"{_rel(path)}: broken links:\n  " + "\n  ".join(broken)


# -- (d) length ------------------------------------------------------------------------------
def test_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines < MAX_README_LINES, (
        f"README.md has {lines} lines; keep it under {MAX_README_LINES}"
    )


def write_readme_table() -> None:
    """Rewrite the README's generated table from experiments/default.toml."""
    text = README.read_text(encoding="utf-8")
    README.write_text(text.replace(_generated_block(text), default_spec_table()), encoding="utf-8")


if __name__ == "__main__":
    write_readme_table()
    sys.exit(0)
