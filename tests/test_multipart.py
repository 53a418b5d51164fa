"""STOW-RS bodies parsed as they stream: delimiters only at the start of a line, a preamble skipped, a truncated
body refused, the size limit held while the body arrives."""
from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("python_multipart", reason="needs radsight[serve]")

from radsight.service.multipart import MultipartError, PartReader, TooLarge, media_type, read_parts  # noqa: E402

BODY = (b"--b0\r\nContent-Type: application/dicom\r\n\r\nDICM data with --b0 inside\r\n--b0x\r\n"
        b"--b0\r\nContent-Type: application/dicom\r\n\r\nsecond\r\n--b0--\r\nepilogue")


def _parse(body: bytes, chunk: int, limit: float = float("inf")) -> list[bytes]:
    reader = PartReader("b0", limit)
    for i in range(0, len(body), chunk):
        reader.feed(body[i:i + chunk])
    return reader.parts()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 10_000])
def test_a_boundary_inside_a_part_is_data_however_the_body_is_chunked(chunk):
    assert _parse(BODY, chunk) == [b"DICM data with --b0 inside\r\n--b0x", b"second"]
    assert _parse(b"a preamble line\r\n" + BODY, chunk)[1] == b"second"


def test_a_truncated_or_foreign_body_is_refused_and_the_limit_holds_while_streaming():
    with pytest.raises(MultipartError, match="ends before"):
        _parse(BODY[:60], 8)
    with pytest.raises(MultipartError, match="no multipart delimiter"):
        _parse(b"x" * 70_000, 1000)
    with pytest.raises(TooLarge):
        _parse(BODY, 10, limit=50)
    with pytest.raises(MultipartError, match="boundary"):
        PartReader("")


def test_media_types_and_parameter_names_compare_case_insensitively():
    kind, params = media_type('MULTIPART/Related; TYPE="application/dicom"; Boundary="b0"')
    assert kind == "multipart/related" and params == {"type": "application/dicom", "boundary": "b0"}

    async def chunks():
        for i in range(0, len(BODY), 5):
            yield BODY[i:i + 5]
    assert len(asyncio.run(read_parts(chunks(), 'Multipart/Related; BOUNDARY=b0', 1 << 20))) == 2


def test_mutated_bodies_give_parts_or_a_multipart_error_never_another_exception():
    import numpy as np
    rng = np.random.default_rng(0)
    for case in range(3000):
        body = bytearray(BODY)
        for _ in range(rng.integers(1, 6)):
            at = int(rng.integers(0, len(body)))
            kind = rng.integers(0, 3)
            if kind == 0:
                body[at] = int(rng.integers(0, 256))
            elif kind == 1:
                del body[at:at + int(rng.integers(1, 20))]
            else:
                body[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8))
        try:
            parts = _parse(bytes(body), int(rng.integers(1, 64)), limit=10_000)
        except (MultipartError, TooLarge):
            continue
        assert all(isinstance(p, bytes) for p in parts), case
