"""The committed UI bundle (``oore/web/dist``) is what the sources in ``web/`` build to.

``pip install .`` ships the committed bundle, so nobody needs Node.js to run oore; this
test rebuilds it from the locked dependencies (``npm ci``, then ``npm run build``) in a
scratch copy of ``web/`` and fails when a source changed without the bundle being rebuilt.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "web"
COMMITTED = ROOT / "oore" / "web" / "dist"
NPM_TIMEOUT = 240


def _files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _npm(*args: str, cwd: Path) -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("building the web UI needs node (>= 20.19) and npm", pytrace=False)
    result = subprocess.run(
        [npm, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"`npm {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")


@pytest.mark.timeout(NPM_TIMEOUT + 60)
def test_the_committed_bundle_is_what_the_sources_build(tmp_path: Path) -> None:
    scratch = tmp_path / "web"
    shutil.copytree(SOURCES, scratch, ignore=shutil.ignore_patterns("node_modules"))
    _npm("ci", "--no-audit", "--no-fund", cwd=scratch)
    _npm("run", "build", cwd=scratch)

    built = _files(tmp_path / "oore" / "web" / "dist")
    committed = _files(COMMITTED)
    assert "index.html" in built
    stale = sorted(
        name for name in built.keys() | committed.keys() if built.get(name) != committed.get(name)
    )
    assert not stale, (
        f"oore/web/dist differs from what web/ builds ({', '.join(stale)}): "
        "run `npm ci && npm run build` in web/ and commit oore/web/dist"
    )


def test_the_bundle_has_no_inline_script_or_style() -> None:
    """The UI's Content-Security-Policy allows scripts and styles only from files."""
    index = (COMMITTED / "index.html").read_text()
    assert "<style" not in index and " style=" not in index
    for tag in index.split("<script")[1:]:
        assert 'src="/assets/' in tag.split(">", 1)[0], tag
    assets = {path.name for path in (COMMITTED / "assets").iterdir()}
    assert any(name.endswith(".js") for name in assets)
    assert any(name.endswith(".css") for name in assets)
    assert not any(name.endswith(".map") for name in assets)
