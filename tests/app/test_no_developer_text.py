"""No page or report shows developer text: no Python string that Streamlit's magic would draw, no HTML comment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core import report
from tests.app.harness import open_page
from tests.conftest import PROJECT_ROOT
from tests.report.test_report import write_report_models

SCRIPTS = sorted([PROJECT_ROOT / "streamlit_app.py", *(PROJECT_ROOT / "pages").glob("*.py")])
COMMENTED_CARD = "# Fixture card\n\n<!-- guard:start -->\n## Out-of-distribution guard\nMeasured.\n<!-- guard:end -->\n"


def magic_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every bare string statement Streamlit's magic would draw: all but the docstrings."""
    found = []

    def visit(body: list[ast.stmt], docstring_allowed: bool) -> None:
        for index, statement in enumerate(body):
            if (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
                    and isinstance(statement.value.value, str) and not (docstring_allowed and index == 0)):
                found.append((statement.lineno, statement.value.value))
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(statement, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.AST):
                    visit(inner, isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                          and field == "body")

    visit(ast.parse(source).body, True)
    return found


def test_the_check_finds_a_stray_docstring() -> None:
    source = '"""Module."""\nX = 1\n"""What X is."""\ndef f():\n    """Doc."""\n    "drawn"\n'
    assert magic_strings(source) == [(3, "What X is."), (6, "drawn")]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_page_draws_a_python_string_as_text(script: Path) -> None:
    assert magic_strings(script.read_text(encoding="utf-8")) == [], script.name


@pytest.fixture()
def commented_models(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fixture models whose card.md holds section markers (HTML comments), as the guard and audit write them."""
    root = write_report_models(tmp_path / "models", data_root)
    for card in root.glob("*/card.md"):
        card.write_text(COMMENTED_CARD)
    monkeypatch.setenv("PNEUMONIA_MODELS", str(root))
    return root


def test_report_shows_no_html_comment_and_one_limitation_per_point(commented_models: Path, data_root: Path) -> None:
    html = report.build_report(commented_models, data_root, heatmaps=False)
    assert "Out-of-distribution guard" in html  # the card is in the report ...
    assert "<!--" not in html and "&lt;!--" not in html  # ... without its markers, raw or escaped
    limitations = html.split("Limitations", 1)[1].split("</ul>", 1)[0]
    assert limitations.count("<li>") == len(report.LIMITATIONS)


@pytest.mark.parametrize("page", ["pages/1_Overview.py", "pages/3_Model_comparison.py"])
def test_model_cards_on_pages_show_no_html_comment(commented_models: Path, page: str) -> None:
    at = open_page(page, timeout=120)
    shown = [element.value for element in (*at.markdown, *at.caption, *at.text) if isinstance(element.value, str)]
    assert any("Out-of-distribution guard" in text for text in shown)
    assert not any("<!--" in text for text in shown)


@pytest.mark.parametrize("path", [PROJECT_ROOT / "README.md", *SCRIPTS], ids=lambda p: p.name)
def test_no_internal_issue_number_in_what_users_read(path: Path) -> None:
    """The README and the pages speak to users: no 'issue 14', no '#14' of the team's tracker."""
    import re

    found = re.findall(r"(?i)\bissues? *#?\d+|(?<![\w&])#\d+\b", path.read_text())
    assert not found, found
