"""The documentation tells the truth: every setting is documented, and every test it cites exists."""

import re
from pathlib import Path

from authserver.config import Defaults

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


def test_configuration_names_only_real_settings():
    text = (ROOT / "docs/configuration.md").read_text()
    named = set(re.findall(r"AUTHSERVER_([A-Z0-9_]+)", text))
    assert named - SETTINGS - NOT_SETTINGS == set()


def test_every_path_security_md_cites_exists():
    text = (ROOT / "SECURITY.md").read_text()
    paths = set(re.findall(r"`((?:tests|authserver|docs)/[\w./-]+)`", text))
    assert paths, "SECURITY.md cites no paths"
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
