"""XMP from a photo: where it hides, and a reader that tolerates what drones write.

Three places hold XMP in a JPEG: the standard APP1 segment, the extended-XMP APP1 segments
(a packet too big for one segment, split and named by a GUID in the main packet) and the EXIF
IFD0 tag 0x02BC (XMLPacket; some DJI firmware, e.g. the Mavic 3, writes it only there).

Drone XMP is often not well-formed XML (DJI's Zenmuse XT S declares the same namespace twice
and cuts the closing processing instruction), so it is read the way ExifTool reads it: tag by
tag, not by an XML parser that gives up on the first error. No DTD or entity is ever expanded.
Properties are keyed by (family, lower-case name): the family is the vendor a namespace belongs
to (several URIs and prefixes are in use for the same vendor's tags), and a struct's fields are
flattened onto its name as ExifTool does (Skydio `CameraOrientationNED/Yaw` ->
`cameraorientationnedyaw`).
"""

from __future__ import annotations

import html
import re

XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_APP1 = b"http://ns.adobe.com/xmp/extension/\x00"
MAX_EXTENDED_BYTES = 64 << 20  # an extended packet is a few MB at most; this stops a lying header

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

_TOKEN = re.compile(
    r"<!--.*?-->|<\?.*?\?>|<!\[CDATA\[(?P<cdata>.*?)\]\]>|<![^>]*>"
    r"|<(?P<close>/?)(?P<name>[A-Za-z_][\w.:-]*)"
    r"(?P<attrs>(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(?P<empty>/?)>",
    re.S,
)
_ATTR = re.compile(r"([^\s=/>]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")

# drone-dji, and the older namespace of the Zenmuse XT/XT S ("DJI:")
_DJI_URIS = {"http://www.dji.com/drone-dji/1.0", "http://www.dji.com"}

XmpProps = dict[tuple[str, str], str]


def family(uri: str, prefix: str) -> str:
    """The vendor a namespace belongs to; unknown namespaces are keyed by their URI."""
    u, p = uri.lower(), prefix.lower()
    if u.rstrip("/") in _DJI_URIS or p in ("drone-dji", "dji"):
        return "dji"
    if "autel" in u or p == "drone":  # Autel's newer firmware copies DJI's tag names
        return "dji"
    if "skydio.com" in u:
        return "skydio"
    if "parrot.com" in u:
        return "parrot"
    if "pix4d.com/camera" in u or "sensefly.com/camera" in u:
        return "camera"
    if p == "camera" and "google.com" not in u:  # Parrot writes xmlns:Camera="Camera/"
        return "camera"
    if u.startswith("http://ns.adobe.com/exif/1.0"):
        return "exif"
    if u.startswith("http://ns.adobe.com/tiff/1.0"):
        return "tiff"
    if u.startswith("http://cipa.jp/exif/1.0"):
        return "exifEX"
    if u.startswith("http://ns.adobe.com/xmp/note"):
        return "xmpNote"
    return uri


class _Frame:
    __slots__ = ("fam", "holds", "kind", "name", "ns", "path")

    def __init__(self, name: str, ns: dict, kind: str, fam: str = "", path: str = "", holds=False):
        self.name, self.ns, self.kind, self.fam, self.path = name, ns, kind, fam, path
        self.holds = holds  # its children are properties (a node or a parseType=Resource struct)


def parse_xmp(packet: bytes | str) -> XmpProps:
    """Every simple property in an XMP packet: {(family, name.lower()): text}; the first of a
    list's items; the first occurrence wins."""
    text = packet.decode("utf-8", "replace") if isinstance(packet, bytes) else packet
    out: XmpProps = {}
    root = _Frame("", {"xml": "xml"}, "container")
    frames = [root]
    pos = 0

    def put(fam: str, name: str, value: str) -> None:
        value = html.unescape(value).strip()
        if name and value:
            out.setdefault((fam, name.lower()), value)

    for m in _TOKEN.finditer(text):
        between = text[pos : m.start()]
        pos = m.end()
        top = frames[-1]
        if top.kind in ("prop", "li") and between.strip():
            put(top.fam, top.path, between)
        if m.group("cdata") is not None:
            if top.kind in ("prop", "li"):
                put(top.fam, top.path, m.group("cdata"))
            continue
        name = m.group("name")
        if not name:
            continue  # comment, processing instruction, DOCTYPE: never expanded
        if m.group("close"):
            for i in range(len(frames) - 1, 0, -1):
                if frames[i].name == name:
                    del frames[i:]
                    break
            continue
        attrs = [(k, v or w) for k, v, w in _ATTR.findall(m.group("attrs"))]
        ns = dict(top.ns)
        for k, v in attrs:
            if k.startswith("xmlns:"):
                ns[k[6:]] = v
        prefix, _, local = name.rpartition(":")
        uri = ns.get(prefix, prefix)
        props = [(k, v) for k, v in attrs if not k.startswith("xmlns") and ":" in k]
        parse_type = next((v for k, v in props if k.endswith(":parseType")), "")
        if uri == RDF and local == "Description":
            inner = top.kind in ("prop", "li")
            frame = _Frame(name, ns, "node", top.fam if inner else "", top.path if inner else "")
            frame.holds = True
        elif uri == RDF and local in ("Seq", "Bag", "Alt", "li"):
            frame = _Frame(name, ns, "li" if local == "li" else "list", top.fam, top.path)
            frame.holds = local == "li" and parse_type == "Resource"
        elif top.holds:
            fam = top.fam if top.path else family(uri, prefix)
            frame = _Frame(name, ns, "prop", fam, top.path + local, parse_type == "Resource")
        else:
            frame = _Frame(name, ns, "container", top.fam, top.path)
        for k, v in props:
            p, _, a = k.rpartition(":")
            auri = ns.get(p, p)
            if auri == RDF:
                if a == "resource" and frame.kind == "prop":
                    put(frame.fam, frame.path, v)
                continue
            if auri == "xml" or p == "xml":
                continue
            if frame.kind == "node" and not frame.path:
                put(family(auri, p), a, v)
            elif frame.kind in ("node", "prop", "li"):
                put(frame.fam, frame.path + a, v)
        if not m.group("empty"):
            frames.append(frame)
    return out


def jpeg_packets(applist: list[tuple[str, bytes]]) -> tuple[bytes | None, bytes | None]:
    """(standard XMP packet, reassembled extended XMP) from a JPEG's APPn segments (Pillow's
    `applist`, there in every Pillow version, unlike info["xmp"] which needs Pillow >= 10)."""
    main = None
    chunks: dict[str, tuple[int, dict[int, bytes]]] = {}
    for marker, data in applist or []:
        if marker != "APP1":
            continue
        if data.startswith(XMP_APP1) and main is None:
            main = data[len(XMP_APP1) :]
        elif data.startswith(XMP_EXT_APP1) and len(data) >= len(XMP_EXT_APP1) + 40:
            head = len(XMP_EXT_APP1)
            guid = data[head : head + 32].decode("ascii", "replace")
            full = int.from_bytes(data[head + 32 : head + 36], "big")
            offset = int.from_bytes(data[head + 36 : head + 40], "big")
            if 0 < full <= MAX_EXTENDED_BYTES:
                chunks.setdefault(guid, (full, {}))[1][offset] = data[head + 40 :]
    if not chunks or main is None:
        return main, None
    # Only the part the main packet names belongs to it (Adobe XMP spec part 3, 1.1.3.1).
    named = parse_xmp(main).get(("xmpNote", "hasextendedxmp"))
    if named not in chunks:
        return main, None
    full, parts = chunks[named]
    buf = bytearray(full)
    filled = 0
    for offset, chunk in sorted(parts.items()):
        if offset + len(chunk) > full:
            return main, None
        buf[offset : offset + len(chunk)] = chunk
        filled += len(chunk)
    return main, bytes(buf) if filled == full else None
