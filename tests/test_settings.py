"""Settings: read once from CLINIC_* variables, typed, refused loudly when wrong, documented."""

import os
import re
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from clinic import settings
from clinic.settings import SettingsError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults_need_no_setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = settings.load(environ={})
    assert s.host == "127.0.0.1" and s.port == 8080
    assert s.data_dir == str(tmp_path / "data")
    assert s.database_url == f"sqlite:///{tmp_path / 'data' / 'clinic.db'}"
    assert s.queue_url == f"sqlite:///{tmp_path / 'data' / 'queue.db'}"
    assert s.base_url == "http://127.0.0.1:8080"
    assert isinstance(s.timezone, ZoneInfo)


def test_values_are_typed():
    s = settings.load(environ={"CLINIC_PORT": "9000", "CLINIC_TIMEZONE": "America/New_York",
                               "CLINIC_CANCEL_CUTOFF": "90m", "CLINIC_WORKERS": "3"})
    assert s.port == 9000 and s.workers == 3
    assert s.timezone == ZoneInfo("America/New_York")
    assert s.cancel_cutoff == timedelta(minutes=90)


@pytest.mark.parametrize("name, value", [
    ("CLINIC_PORT", "eighty"), ("CLINIC_PORT", "70000"), ("CLINIC_TIMEZONE", "Nowhere/City"),
    ("CLINIC_CANCEL_CUTOFF", "soon"), ("CLINIC_WORKERS", "0"),
    ("CLINIC_DATABASE_URL", "mysql://x"), ("CLINIC_QUEUE_URL", "amqp://x"),
])
def test_invalid_values_are_refused_with_one_line_naming_the_variable(name, value):
    with pytest.raises(SettingsError) as info:
        settings.load(environ={name: value})
    message = str(info.value)
    assert message.startswith(f"{name}={value!r} is invalid: ") and "\n" not in message


def test_machine_timezone_comes_from_tz(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert settings.load(environ={}).timezone == ZoneInfo("Asia/Tokyo")


def test_secret_key_is_generated_once_and_kept(tmp_path):
    s = settings.load(environ={"CLINIC_DATA_DIR": str(tmp_path)})
    first = settings.ensure_secret_key(s).secret_key
    again = settings.ensure_secret_key(s).secret_key
    assert first == again and len(first) >= 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    configured = settings.ensure_secret_key(s.replace(secret_key="given"))
    assert configured.secret_key == "given"


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    missing = [env for env, _, _ in settings.describe() if f"`{env}`" not in text]
    assert not missing, f"README.md does not document: {', '.join(missing)}"


def test_the_readme_documents_no_setting_that_does_not_exist():
    known = {env for env, _, _ in settings.describe()}
    documented = set(re.findall(r"`(CLINIC_[A-Z0-9_]+)`", README.read_text()))
    assert documented <= known, f"README.md documents unknown: {documented - known}"


def test_every_setting_has_help():
    for env, _, help_text in settings.describe():
        assert help_text.strip().endswith("."), env


def test_environment_is_read_at_load_not_import(monkeypatch):
    monkeypatch.setitem(os.environ, "CLINIC_NAME", "Praxis Sonnenschein")
    assert settings.load().name == "Praxis Sonnenschein"


def test_the_readme_table_is_the_generated_one():
    from clinic.cli import settings_table

    assert settings_table() in README.read_text(), (
        "README.md's settings table is out of date: paste `python run.py settings --markdown`")
