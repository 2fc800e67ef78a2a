"""Shared helpers for the official-layout builders: CSV rows with line numbers, cached directory
listings and cheap file-header checks.

Why: a dataset of ~100k files must be validated in seconds. Existence is answered from one
``os.scandir`` per folder (not one ``stat`` per file), and an image is checked by parsing its
header and looking at its tail (PNG ``IEND`` / JPEG end-of-image), never by decoding pixels.
"""

from __future__ import annotations

import csv
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from avsbench_kit.errors import DataError

# ---- CSV ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvRow:
    """One data record: ``index`` is 0-based over data records (pandas' row index), ``line`` the
    1-based line of the file where the record starts (what a user opens in an editor)."""

    index: int
    line: int
    fields: list[str]
    error: str = ""  # set when the csv module could not parse the record (NUL byte, open quote)


@dataclass
class CsvTable:
    path: Path
    header: list[str]
    rows: list[CsvRow]

    def col(self, name: str) -> int:
        return self.header.index(name)

    def malformed(self, row: CsvRow) -> str | None:
        """Why a record cannot be used as is (None if it has the header's number of fields)."""
        if row.error:
            return f"line {row.line}: unparsable CSV ({row.error})"
        if len(row.fields) != len(self.header):
            return f"line {row.line}: {len(row.fields)} field(s), the header has {len(self.header)}"
        return None


def read_csv(path: Path, required: Iterable[str] = ()) -> CsvTable:
    """Read a comma-separated file with a header row, keeping line numbers.

    Blank lines are skipped (as pandas does), so ``index`` matches the official
    ``pd.read_csv`` row index. A missing/undecodable file or a header lacking ``required``
    columns is a :class:`DataError` (nothing else can be trusted then); a bad data record is
    kept for the builder to report as a per-sample problem.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist", hint="point --root at the dataset folder holding it")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte {exc.start})",
            hint="restore the metadata file from the official release",
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[CsvRow] = []
    last_line = 0
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if header is not None:
                rows.append(CsvRow(len(rows), start, [], str(exc)))
            if reader.line_num <= last_line:  # the reader did not advance: give up on the rest
                break
            last_line = reader.line_num
            continue
        last_line = reader.line_num
        if not fields or all(not f.strip() for f in fields) and len(fields) <= 1:
            continue
        if header is None:
            header = [h.strip() for h in fields]
            continue
        rows.append(CsvRow(len(rows), start, fields))
    if header is None:
        raise DataError(f"{path} is empty (no header row)", hint="restore it from the official release")
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {missing} (header: {','.join(header)})",
            hint="this does not look like the official metadata file; restore it from the release",
        )
    return CsvTable(path, header, rows)


# ---- directory listings ------------------------------------------------------------------------


class DirListing:
    """``os.scandir`` each directory once; answer existence questions from the cached listing."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self._cache: dict[str, tuple[frozenset[str], frozenset[str]] | None] = {}

    def _list(self, rel_dir: str) -> tuple[frozenset[str], frozenset[str]] | None:
        if rel_dir not in self._cache:
            files: list[str] = []
            dirs: list[str] = []
            try:
                with os.scandir(os.path.join(self._root, rel_dir) if rel_dir else self._root) as it:
                    for entry in it:
                        (dirs if entry.is_dir() else files).append(entry.name)
                self._cache[rel_dir] = (frozenset(files), frozenset(dirs))
            except (FileNotFoundError, NotADirectoryError):
                self._cache[rel_dir] = None
            except OSError as exc:  # e.g. no permission: "missing" would send the user the wrong way
                raise DataError(
                    f"cannot list {self.root / rel_dir}: {exc.strerror or exc}",
                    hint="make the dataset folder readable by this user",
                ) from None
        return self._cache[rel_dir]

    def files(self, rel_dir: str) -> frozenset[str] | None:
        """Names of the (non-directory) entries of ``rel_dir``; None if it is not a directory."""
        listing = self._list(rel_dir)
        return None if listing is None else listing[0]

    def is_dir(self, rel_dir: str) -> bool:
        return self._list(rel_dir) is not None

    def is_file(self, rel_path: str) -> bool:
        parent, _, name = rel_path.rpartition("/")
        names = self.files(parent)
        return names is not None and name in names

    def forget(self, rel_dir: str) -> None:
        """Drop a cached listing (lets the builder free memory once a clip is done)."""
        self._cache.pop(rel_dir, None)


# ---- file headers ------------------------------------------------------------------------------

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_TAIL = 1024
_HEAD = 4096


class HeaderError(ValueError):
    """The file is not a usable image / WAV; the message is the reason shown to the user."""


class _Window:
    """Positional reads through one small buffer: a header walk costs one or two syscalls."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self.base, self.buf = 0, b""

    def read(self, pos: int, n: int) -> bytes:
        if not (self.base <= pos and pos + n <= self.base + len(self.buf)):
            os.lseek(self.fd, pos, os.SEEK_SET)
            self.base, self.buf = pos, os.read(self.fd, max(n, _HEAD))
        return self.buf[pos - self.base : pos - self.base + n]

    def tail(self) -> bytes:
        start = max(0, self.size - _TAIL)
        return self.read(start, self.size - start)


def _png_size(win: _Window) -> tuple[int, int]:
    head = win.read(0, 24)
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise HeaderError("corrupt PNG (no IHDR header chunk)")
    width, height = struct.unpack(">II", head[16:24])
    if width == 0 or height == 0:
        raise HeaderError("corrupt PNG (zero width or height)")
    if b"IEND" not in win.tail():
        raise HeaderError("truncated PNG (no IEND chunk at the end)")
    return width, height


def _jpeg_size(win: _Window) -> tuple[int, int]:
    pos = 2
    for _ in range(4096):  # segments before the frame header; bounded against garbage
        seg = win.read(pos, 9)
        if len(seg) < 2:
            break
        if seg[0] != 0xFF:
            raise HeaderError(f"corrupt JPEG (no marker at byte {pos})")
        if seg[1] == 0xFF:  # fill byte
            pos += 1
            continue
        marker = seg[1]
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if len(seg) < 4:
            break
        length = (seg[2] << 8) | seg[3]
        if length < 2:
            raise HeaderError("corrupt JPEG (bad segment length)")
        if marker in _JPEG_SOF:
            if len(seg) < 9:
                break
            height, width = struct.unpack(">HH", seg[5:9])
            if width == 0 or height == 0:
                raise HeaderError("corrupt JPEG (zero width or height)")
            if b"\xff\xd9" not in win.tail():
                raise HeaderError("truncated JPEG (no end-of-image marker at the end)")
            return width, height
        pos += 2 + length
    raise HeaderError("corrupt JPEG (no frame header)")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG or JPEG from its header; checks the file is not truncated.

    Other formats are handed to PIL (header only), since the official loaders open images by
    content, not by extension. Raises :class:`HeaderError` with a user-facing reason.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise HeaderError(f"unreadable ({exc.strerror or exc})") from None
    try:
        win = _Window(fd, os.fstat(fd).st_size)
        if win.size == 0:
            raise HeaderError("empty file")
        head = win.read(0, 8)
        if head == _PNG_SIG:
            return _png_size(win)
        if head.startswith(b"\xff\xd8"):
            return _jpeg_size(win)
    except OSError as exc:
        raise HeaderError(f"unreadable ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise HeaderError(f"not an image (starts with {head!r})") from None


def check_wav(path: str | Path) -> None:
    """Raise :class:`HeaderError` unless ``path`` is a WAV file the loaders can decode: the header
    is parsed, not just sniffed (a header-only, empty, truncated or odd-width WAV is refused)."""
    from avsbench_kit.data.audio import BadWav, wav_header

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise HeaderError(f"unreadable ({exc.strerror or exc})") from None
    try:
        win = _Window(fd, os.fstat(fd).st_size)
        if win.size == 0:
            raise HeaderError("empty file")
        wav_header(win.read, win.size)
    except BadWav as exc:
        raise HeaderError(str(exc)) from None
    except OSError as exc:
        raise HeaderError(f"unreadable ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


# ---- the per-file checker the builders share ---------------------------------------------------


class MediaChecker:
    """Answers "is this file usable?" once per file, with a reason a user can act on.

    ``frame_size`` (width, height) is enforced on images checked with ``sized=True``: S4 and
    MS3 frames and masks must be 224x224 because the official loader feeds them un-resized.
    """

    def __init__(self, root: Path, frame_size: tuple[int, int] | None = None, size_rule: str = "") -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self.listing = DirListing(self.root)
        self.frame_size = frame_size
        self.size_rule = size_rule
        self._reasons: dict[str, str | None] = {}
        self.files_checked = 0

    def _cached(self, rel: str, check: Callable[[str], str | None], variant: str = "") -> str | None:
        slot = f"{rel}\0{variant}"
        if slot not in self._reasons:
            if not self.listing.is_file(rel):
                self._reasons[slot] = "missing"
            else:
                self.files_checked += 1
                self._reasons[slot] = check(os.path.join(self._root, rel))
        return self._reasons[slot]

    def image(self, rel: str, sized: bool = False) -> str | None:
        """None if ``rel`` is a readable image (of the required size if ``sized``), else why not."""

        def check(path: str) -> str | None:
            try:
                width, height = image_size(path)
            except HeaderError as exc:
                return str(exc)
            if sized and self.frame_size and (width, height) != self.frame_size:
                want = "x".join(map(str, self.frame_size))
                return f"image is {width}x{height}; {self.size_rule or 'expected ' + want}"
            return None

        return self._cached(rel, check, "sized" if sized else "")

    def wav(self, rel: str) -> str | None:
        def check(path: str) -> str | None:
            try:
                check_wav(path)
            except HeaderError as exc:
                return str(exc)
            return None

        return self._cached(rel, check)

    def optional(self, rel: str) -> str:
        """``rel`` if it exists, else "" (for the optional log-mel pickles)."""
        return rel if self.listing.is_file(rel) else ""


class KeyMaker:
    """Sample keys without dots, checked for uniqueness (WebDataset splits keys at the first dot)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def make(self, name: str, line: int) -> tuple[str, str | None]:
        """(key, reason-or-None): the reason names the line that already used this key."""
        key = name.replace(".", "_").replace("/", "_")
        if key in self._seen:
            origin = f" (from {name!r})" if key != name else ""
            return key, f"line {line}: sample key {key!r}{origin} already used on line {self._seen[key]}"
        self._seen[key] = line
        return key, None
