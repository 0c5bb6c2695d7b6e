"""A real HTTP server on 127.0.0.1 for the download tests, and the demo zip it serves.

`DemoServer.files` maps a path to its bytes; `drop_after[path] = n` sends the full
Content-Length but only n bytes, then closes the connection (a dropped download);
`hold_after[path] = n` sends n bytes, then waits for `release` (a slow download, to cancel).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

from conftest import ROOT, textured, write_geotiff

from tools.demo_release import build_zip

DEMO_BUNDLE = ROOT / "resources" / "demo" / "bundle"


class DemoServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.hold_after: dict[str, int] = {}
        self.release = threading.Event()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # The client may hang up first (a cancel): that is not the server's error.
                with contextlib.suppress(OSError):
                    if self.path in server.drop_after:
                        self.wfile.write(body[: server.drop_after[self.path]])
                        self.close_connection = True
                        return
                    if self.path in server.hold_after:
                        n = server.hold_after[self.path]
                        self.wfile.write(body[:n])
                        self.wfile.flush()
                        server.release.wait(60)
                        body = body[n:]
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def publish(self, path: str, body: bytes, sha256: str | None = None) -> str:
        """Serve `body` at `path` and its checksum at `path`.sha256; the URL."""
        self.files[path] = body
        digest = sha256 or hashlib.sha256(body).hexdigest()
        self.files[path + ".sha256"] = f"{digest}  {Path(path).name}\n".encode()
        return self.url(path)

    def __enter__(self) -> DemoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def tiny_world(folder: Path) -> Path:
    """A 64 x 64 px satellite raster and one photo: enough to show the world is installed."""
    from PIL import Image

    folder.mkdir(parents=True)
    write_geotiff(folder / "satellite.tif", textured(64, 64))
    (folder / "drone").mkdir()
    Image.fromarray(textured(48, 64, seed=1)).save(folder / "drone" / "drone_000.jpg")
    return folder


def demo_zip(folder: Path) -> Path:
    """The release zip (`tools/demo_release.py`) of the real demo bundle and a tiny world."""
    out = folder / "geobridge-demo.zip"
    build_zip(out, DEMO_BUNDLE, tiny_world(folder / "world"))
    return out


def raw_zip(out: Path, entries: dict[str, bytes]) -> Path:
    """A zip whose entries are named exactly as given (no sanitising, unlike ZipFile.write)."""
    with zipfile.ZipFile(out, "w") as z:
        for name, data in entries.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return out


def leftovers(parent: Path, keep: str = "demo") -> list[str]:
    """Everything in `parent` but the installed folder: temporary files of an install."""
    return sorted(p.name for p in parent.iterdir() if p.name != keep) if parent.exists() else []
