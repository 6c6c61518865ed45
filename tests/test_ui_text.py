"""Text and icons the pages show must render on any lecture PC: Material icons, never emoji (a Linux machine without
an emoji font shows each one as an empty box)."""

import re

# Emoji and pictographs, dingbats, miscellaneous symbols and technical symbols, and the variation selector that
# turns a plain character into an emoji.
EMOJI = re.compile("[\U0001f000-\U0001ffff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\ufe0f]")


def ui_files(root):
    return [root / "app.py", *sorted((root / "app_pages").glob("*.py")), *sorted((root / "ui").glob("*.py"))]


def test_ui_files_use_material_icons_not_emoji(root):
    found = [
        f"{path.relative_to(root)}:{number}: {line.strip()[:80]}"
        for path in ui_files(root)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if EMOJI.search(line)
    ]
    assert not found, "emoji in the UI (use ':material/name:' icons):\n" + "\n".join(found)


def test_every_page_icon_is_a_material_icon():
    from ui.navigation import HOME, PAGES

    assert all(page.icon.startswith(":material/") and page.icon.endswith(":") for page in (HOME, *PAGES))
