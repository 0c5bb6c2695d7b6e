"""Installing a zipped bundle from the web (`core.download`), against a real HTTP server on
127.0.0.1 serving the release zip of the real demo bundle: every failure leaves nothing
half-installed, and an earlier install untouched."""

from __future__ import annotations

import itertools
import os
import zipfile
from pathlib import Path

import pytest
from demo_server import DEMO_BUNDLE, DemoServer, demo_zip, leftovers, raw_zip

from geobridge_qgis.core import download
from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.errors import UserError


@pytest.fixture(scope="module")
def zip_bytes(tmp_path_factory) -> bytes:
    return demo_zip(tmp_path_factory.mktemp("release")).read_bytes()


@pytest.fixture
def server():
    with DemoServer() as s:
        yield s


@pytest.fixture
def earlier(tmp_path) -> Path:
    """An earlier install at the target: a failure must leave it as it was."""
    target = tmp_path / "models" / "demo"
    target.mkdir(parents=True)
    (target / "marker.txt").write_text("earlier install")
    return target


def test_install_replaces_the_earlier_install(zip_bytes, server, earlier):
    url = server.publish("/v1/geobridge-demo.zip", zip_bytes)
    seen: list[tuple[int, int]] = []
    installed = download.install(url, earlier, progress=lambda d, t: seen.append((d, t)))
    assert installed.folder == earlier and installed.bundle == earlier / "bundle"
    assert installed.size == len(zip_bytes)
    assert Bundle.load(installed.bundle).name == Bundle.load(DEMO_BUNDLE).name
    assert (earlier / "world" / "satellite.tif").is_file()
    assert not (earlier / "marker.txt").exists()
    assert leftovers(earlier.parent) == []
    assert seen[0] == (0, len(zip_bytes)) and seen[-1] == (len(zip_bytes), len(zip_bytes))
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    assert server.requests == ["/v1/geobridge-demo.zip.sha256", "/v1/geobridge-demo.zip"]


def test_wrong_checksum(zip_bytes, server, earlier):
    url = server.publish("/geobridge-demo.zip", zip_bytes, sha256="0" * 64)
    with pytest.raises(UserError, match="checksum mismatch") as e:
        download.install(url, earlier)
    assert str(e.value).startswith(url + ": ") and "\n" not in str(e.value)
    assert [p.name for p in earlier.iterdir()] == ["marker.txt"]
    assert leftovers(earlier.parent) == []


def test_a_pinned_checksum_needs_no_companion(zip_bytes, server, tmp_path):
    server.files["/demo.zip"] = zip_bytes
    with pytest.raises(UserError, match="HTTP 404"):
        download.install(server.url("/demo.zip"), tmp_path / "demo")  # no demo.zip.sha256
    import hashlib

    digest = hashlib.sha256(zip_bytes).hexdigest()
    download.install(server.url("/demo.zip"), tmp_path / "demo", sha256=digest)
    assert server.requests[-1] == "/demo.zip"
    assert (tmp_path / "demo" / "bundle" / "manifest.json").is_file()


def test_dropped_connection(zip_bytes, server, earlier):
    url = server.publish("/geobridge-demo.zip", zip_bytes)
    server.drop_after["/geobridge-demo.zip"] = len(zip_bytes) // 3
    with pytest.raises(UserError, match="connection closed after") as e:
        download.install(url, earlier)
    assert str(e.value).startswith(url)
    assert [p.name for p in earlier.iterdir()] == ["marker.txt"]
    assert leftovers(earlier.parent) == []


@pytest.mark.parametrize("name", ["../evil.txt", "bundle/../../evil.txt", "/tmp/evil.txt"])
def test_zip_entry_escaping_its_folder(server, tmp_path, name):
    manifest = (DEMO_BUNDLE / "manifest.json").read_bytes()
    # the escaping entry after a good one: a check entry by entry would have written the first
    body = raw_zip(tmp_path / "bad.zip", {"bundle/manifest.json": manifest, name: b"evil"})
    url = server.publish("/geobridge-demo.zip", body.read_bytes())
    parent = tmp_path / "profile" / "models"
    with pytest.raises(UserError, match="points outside its folder; refused"):
        download.install(url, parent / "demo")
    assert leftovers(parent) == []
    assert not list(tmp_path.rglob("evil.txt"))
    assert not Path("/tmp/evil.txt").exists()


def test_cancel(zip_bytes, server, earlier):
    url = server.publish("/geobridge-demo.zip", zip_bytes)
    done = [0]

    def progress(d: int, _total: int) -> None:
        done[0] = d

    with pytest.raises(download.Cancelled):
        download.install(url, earlier, progress=progress, cancelled=lambda: done[0] > 0)
    assert 0 < done[0] < len(zip_bytes)
    assert [p.name for p in earlier.iterdir()] == ["marker.txt"]
    assert leftovers(earlier.parent) == []


def test_a_zip_whose_bundle_does_not_load(server, tmp_path):
    manifest = (DEMO_BUNDLE / "manifest.json").read_bytes()  # the encoders are missing
    body = raw_zip(tmp_path / "partial.zip", {"bundle/manifest.json": manifest})
    url = server.publish("/geobridge-demo.zip", body.read_bytes())
    target = tmp_path / "models" / "demo"
    with pytest.raises(UserError, match="the bundle inside does not load") as e:
        download.install(url, target)
    assert "missing from the bundle" in str(e.value) and ".demo.unpack-" not in str(e.value)
    assert leftovers(target.parent) == []
    no_bundle = raw_zip(tmp_path / "nobundle.zip", {"readme.txt": b"hello"})
    url = server.publish("/nobundle.zip", no_bundle.read_bytes())
    with pytest.raises(UserError, match="holds no GeoBridge bundle"):
        download.install(url, target)
    not_zip = server.publish("/notzip.zip", b"<html>not found</html>")
    with pytest.raises(UserError, match="not a readable zip"):
        download.install(not_zip, target)
    assert leftovers(target.parent) == []


def test_unreachable_and_unsupported_urls(tmp_path):
    with DemoServer() as s:
        url = s.url("/geobridge-demo.zip")
    # the server is gone: nothing listens on its port any more
    with pytest.raises(UserError, match="cannot connect") as e:
        download.install(url, tmp_path / "demo")
    assert str(e.value).startswith(url + ".sha256: ")
    with pytest.raises(UserError, match="only http and https"):
        download.install("file:///etc/passwd", tmp_path / "demo")
    assert leftovers(tmp_path, keep="") == []


def test_demo_release_zip_is_reproducible(tmp_path):
    from tools.demo_release import build_zip

    bundle = tmp_path / "bundle"
    (bundle / "sub").mkdir(parents=True)
    (bundle / "manifest.json").write_bytes((DEMO_BUNDLE / "manifest.json").read_bytes())
    (bundle / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    a = build_zip(tmp_path / "a" / "geobridge-demo.zip", bundle, None)
    for path in bundle.rglob("*"):  # other times and modes: the same bytes
        os.utime(path, (1e9, 1e9))
        path.chmod(0o755)
    b = build_zip(tmp_path / "b" / "geobridge-demo.zip", bundle, None)
    assert a == b
    sums = (tmp_path / "a" / "geobridge-demo.zip.sha256").read_text()
    assert download.parse_sha256(sums, "sums") == a and sums.endswith("  geobridge-demo.zip\n")
    with zipfile.ZipFile(tmp_path / "a" / "geobridge-demo.zip") as z:
        names = z.namelist()
    assert names == ["bundle/manifest.json", "bundle/sub/b.bin"]
