"""The README, meltano.yml, the config schema and .env.example stay in step."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import yaml

from tap_pipedrive.tap import CONFIG_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
# Settings the SDK adds to every tap; Meltano offers them through capabilities.
SDK_SETTINGS = {
    "stream_maps",
    "stream_map_config",
    "faker_config",
    "flattening_enabled",
    "flattening_max_depth",
    "flattening_max_key_length",
    "flattening_separator",
    "batch_config",
    "emit_activate_version_messages",  # from singer-sdk 0.55
}
TAP_SETTINGS = {
    name: prop for name, prop in CONFIG_SCHEMA["properties"].items() if name not in SDK_SETTINGS
}


def load_readme_tool():
    spec = importlib.util.spec_from_file_location("readme_tool", ROOT / "tools" / "readme.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def extractor() -> dict:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    (tap,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-pipedrive"]
    return tap


def test_readme_generated_sections_are_current():
    tool = load_readme_tool()
    current = (ROOT / "README.md").read_text(encoding="utf-8")
    assert tool.render(current) == current, "run `python tools/readme.py`"


def test_readme_settings_table_lists_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in TAP_SETTINGS:
        assert f"| {name} |" in readme, name


def test_meltano_settings_mirror_the_config_schema():
    settings = {s["name"]: s for s in extractor()["settings"]}
    assert set(settings) == set(TAP_SETTINGS)
    for name, prop in TAP_SETTINGS.items():
        secret = bool(prop.get("secret") or prop.get("writeOnly"))
        assert bool(settings[name].get("sensitive")) == secret, name


def test_env_example_names_every_setting():
    env = (ROOT / ".env.example").read_text(encoding="utf-8")
    for name in TAP_SETTINGS:
        assert f"TAP_PIPEDRIVE_{name.upper()}=" in env, name


def test_meltano_capabilities_match_the_tap():
    from tap_pipedrive.tap import TapPipedrive

    declared = set(extractor()["capabilities"])
    actual = {str(c) for c in TapPipedrive.capabilities}
    assert declared == actual


def plugin_definition() -> dict:
    return yaml.safe_load(
        (ROOT / "plugins" / "extractors" / "tap-pipedrive.yml").read_text(encoding="utf-8")
    )


def test_plugin_definition_is_in_step_with_meltano_yml():
    # `meltano add --plugin-type extractor tap-pipedrive --from-ref <file>` must give a
    # project the same plugin as this repository's own meltano.yml.
    # `python tools/plugin_definition.py` copies them over.
    definition, project = plugin_definition(), extractor()
    for key in ("namespace", "executable", "capabilities", "settings_group_validation"):
        assert definition[key] == project[key], f"{key}: run python tools/plugin_definition.py"
    assert definition["settings"] == project["settings"], "run python tools/plugin_definition.py"
    assert definition["commands"] == project["commands"], "run python tools/plugin_definition.py"
    assert definition["name"] == project["name"]


def test_plugin_definition_pins_the_newest_changelog_version():
    # The release commit dates the newest CHANGELOG.md section and is tagged v<version>:
    # the plugin definition it ships installs that tag.
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## (\d+\.\d+\.\d+) ", changelog, re.M)
    assert versions, "CHANGELOG.md names no version"
    assert plugin_definition()["pip_url"] == (
        f"git+https://github.com/tap-pipedrive/tap-pipedrive.git@v{versions[0]}"
    )
