"""The code stays easy to change: short functions in the core and the pages, no streamlit in the core."""

import ast

MAX_FUNCTION_LINES = 60


def long_functions(root, folder: str) -> list[str]:
    found = []
    for path in sorted((root / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_over_60_lines_in_the_core_or_the_pages(root):
    found = long_functions(root, "vision_core") + long_functions(root, "app_pages") + long_functions(root, "ui")
    assert not found, "split these into smaller steps:\n" + "\n".join(found)


def test_a_new_family_file_is_all_it_takes():
    """Issue 13: adding a model family is one new file in vision_core/models/ (plus its checkpoint); no list to edit.
    Every file there but the shared building blocks is imported, so its registrations run."""
    from pathlib import Path

    from vision_core import models

    files = {path.stem for path in Path(models.__file__).parent.glob("*.py")} - {"__init__", *models.SHARED}
    assert files == set(models.FAMILY_MODULES)
    assert list(models.FAMILY_MODULES[: len(models.PAGE_ORDER)]) == list(models.PAGE_ORDER)
