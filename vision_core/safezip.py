"""Untrusted zip files (run bundles, folders of class images), opened with every limit checked before the bytes it
guards are parsed, decompressed or kept: index size, member count, names, links, encryption, declared and actual sizes.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

READ_CHUNK = 1024 * 1024
MAX_RATIO = 100  # decompressed / compressed for members over 1 MB: float weights deflate ~1.1x, a zip bomb 1000x


class ZipError(ValueError):
    """A zip that is damaged, unsafe or over a limit; the message says which, in plain words."""


def clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


@dataclass(frozen=True)
class ZipLimits:
    what: str  # "a run bundle", "a zip of class folders": how messages name the file
    max_bytes: int  # the zip itself
    max_members: int
    max_index_bytes: int  # the central directory, read before anything is parsed: 1M tiny entries cost nothing
    max_member_bytes: Callable[[str], int]  # decompressed size allowed for a member, by name
    max_depth: int = 3  # folders deep


def _check_name(name: str, limits: ZipLimits) -> None:
    parts = name.rstrip("/").split("/")
    if (
        not name
        or len(name) > 255
        or name.startswith("/")
        or "\\" in name
        or any(ord(c) < 32 for c in name)
        or re.match(r"[A-Za-z]:", name)
        or any(part in ("", ".", "..") for part in parts)
        or len(parts) > limits.max_depth
    ):
        raise ZipError(f"the zip holds an unsafe file name {clip(repr(name))}: is it really {limits.what}?")


def _check_index(data: bytes, limits: ZipLimits) -> None:
    """Read the zip's end record ourselves: refuse a huge index (a zip of a million empty files) before parsing it."""
    tail = data[-(65_535 + 22) :]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ZipError("the file is damaged: it starts like a zip but has no end-of-archive record")
    _, _, _, entries, index_size, _, comment = struct.unpack("<HHHHIIH", tail[at + 4 : at + 22])
    if at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        pickled = b"data.pkl" in tail  # torch.save writes ZIP64 zips around a pickle
        raise ZipError(
            "this is a PyTorch pickle (torch.save): the app never unpickles; import the run bundle (safetensors)"
            if pickled
            else f"the zip uses ZIP64 records, which {limits.what} never needs"
        )
    if at + 22 + comment != len(tail):
        raise ZipError("the zip's end record is damaged or not where it belongs")
    if entries > limits.max_members or index_size > limits.max_index_bytes:
        raise ZipError(f"the zip lists {entries:,} files ({index_size:,} bytes of index); {limits.what} has at most {limits.max_members:,}")  # fmt: skip


def _check_member(info: zipfile.ZipInfo, limits: ZipLimits) -> None:
    name = clip(info.filename)
    _check_name(info.filename, limits)
    if info.flag_bits & 0x1:
        raise ZipError(f"{name} is encrypted; {limits.what} never is")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ZipError(f"{name} uses a compression the app does not read (only deflate)")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise ZipError(f"{name} is a symbolic link; {limits.what} holds plain files")
    limit = limits.max_member_bytes(info.filename)
    if info.file_size > limit:
        raise ZipError(f"{name} unpacks to {info.file_size / 2**20:.0f} MB; the limit is {limit / 2**20:.0f} MB")
    if info.file_size > 2**20 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ZipError(f"{name} would unpack {info.file_size / max(info.compress_size, 1):,.0f}x: a zip bomb?")


def open_zip(data: bytes, limits: ZipLimits) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    """The archive and its files by name (folders left out), after every check; raises ``ZipError``."""
    if len(data) > limits.max_bytes:
        raise ZipError(f"the file is {len(data) / 2**20:.0f} MB; {limits.what} is at most {limits.max_bytes / 2**20:.0f} MB")  # fmt: skip
    if not data:
        raise ZipError("the file is empty")
    if not data.startswith(b"PK\x03\x04"):
        raise ZipError(f"this is not a zip file: upload {limits.what} (.zip)")
    _check_index(data, limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, struct.error) as error:
        raise ZipError(f"the zip file is damaged ({error})") from None
    if len(infos) > limits.max_members:
        raise ZipError(f"the zip holds {len(infos):,} files; {limits.what} has at most {limits.max_members:,}")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        _check_member(info, limits)
        if info.filename in members:
            raise ZipError(f"the zip holds {clip(info.filename)} twice")
        if not info.is_dir():
            members[info.filename] = info
    return archive, members


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The member's bytes, decompressed in chunks and stopped at ``limit`` whatever its header claims."""
    chunks, size = [], 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ZipError(
                        f"{clip(info.filename)} unpacks to over {limit / 2**20:.0f} MB although its header says "
                        f"{info.file_size:,} bytes: a zip bomb?"
                    )
                chunks.append(chunk)
    except ZipError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as error:
        raise ZipError(f"{clip(info.filename)} in the zip is damaged ({error})") from None
    return b"".join(chunks)
