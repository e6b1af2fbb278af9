"""The documentation tells the truth: every setting is documented, and every test it cites exists."""

import re
from pathlib import Path

from authserver.config import (
    REFERENCE_BEGIN,
    REFERENCE_END,
    Defaults,
    settings_reference,
)

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {name for name in vars(Defaults) if name.isupper()}
#: Names docs/configuration.md mentions on purpose that are not settings in Defaults: the retired
#: sign-in limits (refused at start-up) and Flask-Limiter's own switch.
NOT_SETTINGS = {"LOGIN_FAILURES_PER_ACCOUNT", "LOGIN_FAILURES_PER_IP", "RATELIMIT_ENABLED"}


def test_every_setting_has_a_row_in_the_configuration_table():
    text = (ROOT / "docs/configuration.md").read_text()
    rows = set(re.findall(r"^\| `AUTHSERVER_([A-Z0-9_]+)` \|", text, re.MULTILINE))
    assert SETTINGS - rows == set(), "settings missing from docs/configuration.md"
    assert rows - SETTINGS == set(), "rows for settings that do not exist"


def test_the_settings_table_is_the_one_generated_from_config_py():
    text = (ROOT / "docs/configuration.md").read_text()
    generated = text.partition(REFERENCE_BEGIN)[2].partition(REFERENCE_END)[0]
    assert generated.strip() == settings_reference().strip(), "run `make docs` after changing a #: comment"


def test_every_setting_has_a_description():
    rows = settings_reference().splitlines()[2:]
    assert len(rows) == len(SETTINGS)
    assert all(row.rstrip(" |").split(" | ")[-1].strip() for row in rows)


def test_configuration_names_only_real_settings():
    text = (ROOT / "docs/configuration.md").read_text()
    named = set(re.findall(r"AUTHSERVER_([A-Z0-9_]+)", text))
    assert named - SETTINGS - NOT_SETTINGS == set()


def test_every_path_security_md_cites_exists():
    text = (ROOT / "SECURITY.md").read_text()
    paths = set(re.findall(r"`((?:tests|authserver|docs)/[\w./-]+)`", text))
    assert paths, "SECURITY.md cites no paths"
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
