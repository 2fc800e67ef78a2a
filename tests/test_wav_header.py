"""Degenerate WAVs are refused at ``prepare`` with one line naming the file, and ``prepare`` and the
loader agree: every WAV the header check accepts decodes, every WAV it refuses fails to load."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from fake_trees import make_s4_tree, replace_file, wav_bytes

from avsbench_kit.cli.main import main
from avsbench_kit.data.audio import BadWav, read_wav_bytes, wav_header
from avsbench_kit.data.layout import HeaderError, check_wav
from avsbench_kit.errors import DataError


def _header(data: bytes):
    return wav_header(lambda pos, n: data[pos : pos + n], len(data))


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _sf(subtype: str, fmt: str = "WAV", channels: int = 2) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros((160, channels), np.float32) + 0.25, 16000, format=fmt, subtype=subtype)
    return buf.getvalue()


GOOD = wav_bytes()  # 16-bit stereo PCM, 16 kHz, 800 frames; fmt at 12..36, data header at 36
TRUNCATED = GOOD[: len(GOOD) - 100]

BAD = {
    "header-only (16 bytes)": (b"RIFF\x00\x00\x00\x00WAVEfmt ", "no fmt chunk (a 16-byte header without audio)"),
    "RIFF and WAVE only": (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
    "zero frames": (wav_bytes(seconds=0), "no audio frames (the data chunk is empty)"),
    "data chunk smaller than a frame": (_patch(_patch(GOOD, 40, "<I", 3), 4, "<I", 39)[:47], "no audio frames"),
    "truncated file (RIFF size)": (TRUNCATED, "truncated: the RIFF header announces"),
    "truncated data chunk": (_patch(TRUNCATED, 4, "<I", len(TRUNCATED) - 8),
                             "truncated: the data chunk announces 3200 bytes, 3100 are present"),
    "12-bit samples": (_patch(GOOD, 34, "<H", 12), "12-bit PCM samples; PCM WAVs hold 8/16/24/32-bit samples"),
    "16-bit float": (_patch(_patch(GOOD, 20, "<H", 3), 34, "<H", 16), "16-bit float samples"),
    "block size wrong": (_patch(GOOD, 32, "<H", 3), "block size 3 bytes does not match 2 channel(s) x 2 byte(s)"),
    "zero channels": (_patch(GOOD, 22, "<H", 0), "0 channel(s) at 16000 Hz"),
    "zero sample rate": (_patch(GOOD, 24, "<I", 0), "2 channel(s) at 0 Hz"),
    "ADPCM encoding": (_patch(GOOD, 20, "<H", 2), "unsupported encoding (format tag 0x0002)"),
    "fmt chunk too short": (_patch(GOOD, 16, "<I", 8), "fmt chunk is 8 bytes, at least 16 are needed"),
    "no data chunk": (GOOD[:36] + b"junk" + GOOD[40:], "no data chunk"),
    "data before fmt": (GOOD[:12] + GOOD[36:] + GOOD[12:36], "data chunk before any fmt chunk"),
    "not RIFF": (b"ID3\x03" + GOOD[4:], "not a WAV file"),
}

GOOD_VARIANTS = {
    "16-bit PCM": GOOD,
    "8-bit PCM": _sf("PCM_U8"),
    "24-bit PCM": _sf("PCM_24"),
    "32-bit float": _sf("FLOAT"),
    "64-bit float mono": _sf("DOUBLE", channels=1),
    "mu-law": _sf("ULAW"),
    "WAVE_FORMAT_EXTENSIBLE": _sf("PCM_16", "WAVEX"),
    "RF64": _sf("PCM_16", "RF64"),
    "streaming sizes left unset": _patch(_patch(GOOD, 4, "<I", 0xFFFFFFFF), 40, "<I", 0xFFFFFFFF),
    "odd LIST chunk before data": (GOOD[:4] + struct.pack("<I", len(GOOD) - 8 + 14) + GOOD[8:36]
                                   + b"LIST\x05\x00\x00\x00abcde\x00" + GOOD[36:]),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_degenerate_wav_is_refused_by_both_checks(name, tmp_path):
    data, reason = BAD[name]
    with pytest.raises(BadWav) as err:
        _header(data)
    assert reason in str(err.value)
    path = tmp_path / "x.wav"
    path.write_bytes(data)
    with pytest.raises(HeaderError) as err:
        check_wav(path)
    assert reason in str(err.value)
    with pytest.raises(DataError) as err:  # the loader refuses it too (FLAC-like non-RIFF is libsndfile's)
        read_wav_bytes(data, "clip.wav")
    assert "clip.wav" in err.value.message


@pytest.mark.parametrize("name", sorted(GOOD_VARIANTS))
def test_valid_wav_variants_pass_and_decode(name, tmp_path):
    data = GOOD_VARIANTS[name]
    head = _header(data)
    path = tmp_path / "x.wav"
    path.write_bytes(data)
    check_wav(path)
    samples, rate = read_wav_bytes(data, name)
    assert rate == head.rate == 16000
    assert samples.shape == (head.channels, head.frames)


@pytest.mark.parametrize("name", ["header-only (16 bytes)", "zero frames", "truncated data chunk", "12-bit samples"])
def test_prepare_refuses_the_file_in_one_line(name, tmp_path, capsys):
    root = make_s4_tree(tmp_path / "Single-source")
    rel = next(p for p in sorted(root.rglob("*.wav"))).relative_to(root)
    replace_file(root / rel, BAD[name][0])
    assert main(["prepare", "avsbench-s4", "--root", str(root), "--home", str(tmp_path / "home")]) == 3
    err = capsys.readouterr().err
    error_line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert f"{rel}: {BAD[name][1]}" in error_line and "--skip-bad" in err
    assert not (tmp_path / "home" / "prepared").exists() or not list((tmp_path / "home").rglob("manifest.json"))
    # with --skip-bad the clip is excluded and named in the exclusion table
    assert main(["prepare", "avsbench-s4", "--root", str(root), "--home", str(tmp_path / "home"), "--skip-bad"]) == 0
