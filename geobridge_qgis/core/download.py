"""Download a zipped model bundle (the demo model and world) and install it, all or nothing.

`install(url, target)` streams the zip to a temporary file beside `target`, hashing it on the
way; checks the sha256 (given, or read from the companion `<url>.sha256`, whose first word is the
hex digest, as `sha256sum` writes it); unpacks into a temporary folder beside `target`, refusing
any entry that would land outside it; checks that the bundle inside loads (`Bundle.load`, every
encoder's checksum included); and only then renames the folder into place. On any failure or a
cancel the temporary file and folder are removed and an existing `target` is left as it was:
nothing is ever half-installed. A failure is a `UserError` of one line naming the URL.

The companion checksum guards against a truncated or corrupted download (and a wrong file at
the URL); it comes from the same server, so the trust in the content is the trust in that server
over HTTPS. Pass `sha256=` to pin a known digest instead.

The zip holds either a bundle at its top (manifest.json there) or `bundle/` beside other folders
(the demo's `world/`). Only http and https URLs are opened. Never imports QGIS.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .bundle import MANIFEST, Bundle
from .errors import UserError

log = logging.getLogger(__name__)

CHUNK = 1 << 16
TIMEOUT_S = 30.0  # per socket operation, not for the whole download
MAX_UNPACKED = 8 << 30  # a zip that claims more than this is refused before unpacking
USER_AGENT = "GeoBridge-QGIS"

Progress = Callable[[int, int], None]  # (bytes done, bytes in all or 0 when unknown)


class Cancelled(UserError):
    """The user cancelled; nothing was installed."""


@dataclass
class Installed:
    folder: Path  # the installed folder (`target`)
    bundle: Path  # the bundle inside it
    sha256: str  # of the downloaded zip
    size: int  # bytes downloaded


def bundle_in(folder: Path) -> Path | None:
    """The bundle folder of an unpacked download: `folder` itself or its `bundle/`."""
    for candidate in (folder, folder / "bundle"):
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def _check_url(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise UserError(f"{url}: only http and https downloads are supported")


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    """The response for `url`; an HTTP error, an unknown host or a refused connection is a
    UserError naming the URL."""
    _check_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        # The scheme is checked above: only http(s), never file: or ftp:.
        return urllib.request.urlopen(request, timeout=timeout)  # nosec B310
    except urllib.error.HTTPError as e:
        raise UserError(f"{url}: the server answered HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise UserError(f"{url}: cannot connect ({e.reason})") from None
    except TimeoutError:
        raise UserError(f"{url}: no answer within {timeout:.0f} s") from None
    except (OSError, http.client.HTTPException) as e:
        raise UserError(f"{url}: cannot connect ({e})") from None


def parse_sha256(text: str, where: str) -> str:
    """The hex digest at the start of a `sha256sum`-style line."""
    word = text.strip().split()[0].lower() if text.strip() else ""
    if len(word) != 64 or any(c not in "0123456789abcdef" for c in word):
        raise UserError(f"{where}: not a sha256 checksum file")
    return word


def fetch_sha256(url: str, timeout: float = TIMEOUT_S) -> str:
    """The digest published beside `url` at `<url>.sha256`."""
    sums = url + ".sha256"
    with _open(sums, timeout) as response:
        try:
            text = response.read(4096).decode("ascii", "replace")
        except (OSError, http.client.HTTPException) as e:
            raise UserError(f"{sums}: connection lost ({e})") from None
    return parse_sha256(text, sums)


def download(
    url: str,
    dest: Path,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    timeout: float = TIMEOUT_S,
) -> tuple[str, int]:
    """Stream `url` into the open-able path `dest`; (sha256, bytes). A short body (the server
    closed early) is an error even where the HTTP library takes it for the end."""
    with _open(url, timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else 0
        if total:
            _check_space(dest.parent, total, url)
        digest = hashlib.sha256()
        done = 0
        if progress:
            progress(0, total)
        try:
            out = open(dest, "wb")  # noqa: SIM115 (closed below, also on a failed write)
        except OSError as e:
            raise UserError(f"{url}: cannot write {dest} ({e})") from None
        with out:
            while True:
                if cancelled and cancelled():
                    raise Cancelled(f"{url}: cancelled")
                try:
                    chunk = response.read(CHUNK)
                except TimeoutError:
                    raise UserError(
                        f"{url}: the server stopped sending after {_size(done)}"
                        f"{f' of {_size(total)}' if total else ''}"
                    ) from None
                except (OSError, http.client.HTTPException) as e:
                    raise UserError(
                        f"{url}: connection lost after {_size(done)}"
                        f"{f' of {_size(total)}' if total else ''} ({type(e).__name__})"
                    ) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as e:
                    raise UserError(f"{url}: cannot write {dest} ({e})") from None
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total and done != total:
        raise UserError(
            f"{url}: connection closed after {_size(done)} of {_size(total)}; try again"
        )
    return digest.hexdigest(), done


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def _check_space(folder: Path, needed: int, url: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UserError(f"{url}: needs {_size(needed)} in {folder}, only {_size(free)} free")


def _member_path(root: Path, info: zipfile.ZipInfo, url: str) -> Path:
    """Where an entry goes under `root`. An absolute path, a drive, a `..` or a link is
    refused: the whole zip is, not just the entry."""
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    mode = info.external_attr >> 16
    if (
        pure.is_absolute()
        or ".." in pure.parts
        or (pure.parts and ":" in pure.parts[0])
        or (mode & 0o170000) == 0o120000  # a symbolic link
    ):
        raise UserError(f"{url}: zip entry {name!r} points outside its folder; refused")
    path = (root / pure).resolve()
    if path != root and root not in path.parents:
        raise UserError(f"{url}: zip entry {name!r} points outside its folder; refused")
    return path


def unpack(
    zip_path: Path, folder: Path, url: str, cancelled: Callable[[], bool] | None = None
) -> None:
    """Unpack `zip_path` into the existing empty `folder`, after checking every entry."""
    root = folder.resolve()
    try:
        with zipfile.ZipFile(zip_path) as z:
            infos = z.infolist()
            plan = [(info, _member_path(root, info, url)) for info in infos]
            unpacked = sum(info.file_size for info in infos)
            if unpacked > MAX_UNPACKED:
                raise UserError(f"{url}: the zip would unpack to {_size(unpacked)}; refused")
            _check_space(folder, unpacked, url)
            for info, path in plan:
                if cancelled and cancelled():
                    raise Cancelled(f"{url}: cancelled")
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except zipfile.BadZipFile as e:
        raise UserError(f"{url}: not a readable zip ({e})") from None
    except OSError as e:
        raise UserError(f"{url}: cannot unpack into {folder.parent} ({e})") from None


def install(
    url: str,
    target: Path | str,
    sha256: str | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    timeout: float = TIMEOUT_S,
) -> Installed:
    """Download the zip at `url` and install it as the folder `target` (replacing an earlier
    install only once the new one is complete and its bundle loads)."""
    target = Path(target).absolute()
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{url}: cannot create {parent} ({e})") from None
    _check_url(url)
    expected = parse_sha256(sha256, "the given sha256") if sha256 else fetch_sha256(url, timeout)
    prefix = f".{target.name}."
    _remove_leftovers(parent, prefix)
    fd, name = tempfile.mkstemp(prefix=prefix + "part-", suffix=".zip", dir=parent)
    os.close(fd)
    part = Path(name)
    staged = Path(tempfile.mkdtemp(prefix=prefix + "unpack-", dir=parent))
    try:
        got, size = download(url, part, progress, cancelled, timeout)
        if got != expected:
            raise UserError(
                f"{url}: checksum mismatch (sha256 {got[:12]}…, expected {expected[:12]}…): "
                "corrupt or incomplete download, or the wrong file"
            )
        unpack(part, staged, url, cancelled)
        part.unlink()
        bundle = bundle_in(staged)
        if bundle is None:
            raise UserError(
                f"{url}: the zip holds no GeoBridge bundle ({MANIFEST} at its top or in bundle/)"
            )
        try:
            Bundle.load(bundle)
        except UserError as e:
            text = str(e).replace(str(staged), str(target))
            raise UserError(f"{url}: the bundle inside does not load: {text}") from None
        if cancelled and cancelled():
            raise Cancelled(f"{url}: cancelled")
        _swap(staged, target, url)
    except BaseException:
        # Anything (a failure, a cancel, an interrupt): leave no temporary file or folder.
        with contextlib.suppress(OSError):
            part.unlink()
        shutil.rmtree(staged, ignore_errors=True)
        raise
    log.info("installed %s from %s (%s, sha256 %s)", target, url, _size(size), got)
    return Installed(target, target / bundle.relative_to(staged), got, size)


def _swap(staged: Path, target: Path, url: str) -> None:
    """Put `staged` at `target`. A directory rename cannot replace a non-empty folder, so an
    earlier install is moved aside first and put back if the rename fails."""
    old = None
    try:
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            old.rmdir()
            os.replace(target, old)
        try:
            os.replace(staged, target)
        except OSError:
            if old is not None:
                os.replace(old, target)
                old = None
            raise
    except OSError as e:
        raise UserError(f"{url}: cannot put the download in place at {target} ({e})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(parent: Path, prefix: str) -> None:
    """Temporary files of an install that was killed (QGIS closed mid-download)."""
    for path in parent.glob(prefix + "*"):
        if path.name.startswith((prefix + "part-", prefix + "unpack-", prefix + "old-")):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
