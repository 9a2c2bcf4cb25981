"""The official OpenAPI specs beside the repository (../shared), and the schema generator.

Tests that read the specs skip when they are absent (``SPECS_PRESENT``); the generator
(tools/generate_schemas.py) is loaded once per test session.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = REPO_ROOT.parent / "shared" / "pipedrive-openapi"
GENERATOR_PATH = REPO_ROOT / "tools" / "generate_schemas.py"
SPECS_PRESENT = all((SPEC_DIR / f"{version}.yaml").is_file() for version in ("v1", "v2"))
# The skip reason of the tests that need the specs; .ci/spec_skips.py looks for it in CI.
SPECS_MISSING = f"OpenAPI specs not found in {SPEC_DIR}"


@functools.cache
def generator() -> ModuleType:
    """tools/generate_schemas.py as a module."""
    spec = importlib.util.spec_from_file_location("generate_schemas", GENERATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve annotations through sys.modules while the module executes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
