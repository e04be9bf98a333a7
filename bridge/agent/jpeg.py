"""A tiny baseline JPEG of one grey shade, encoded by hand: what simulated agents send as snapshots."""

from __future__ import annotations


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(body) + 2).to_bytes(2, "big") + body


def _huffman_table(table_class: int, symbols: list[int]) -> bytes:
    """A DHT body giving symbol i a code of length i + 1 (canonical codes 0, 10, 110, ...)."""
    counts = [0] * 16
    for i in range(len(symbols)):
        counts[i] = 1
    return bytes([table_class << 4, *counts, *symbols])


def build_grey_jpeg(width: int = 64, height: int = 48, shade: int = 128) -> bytes:
    """A valid baseline greyscale JPEG of `width` x `height` pixels (multiples of 8) in one shade.

    Every 8x8 block is flat, so each block is its DC coefficient alone: the first block carries
    the shade, the others a difference of zero, and every block ends with End Of Block.
    """
    if width <= 0 or height <= 0 or width % 8 or height % 8 or width > 65535 or height > 65535:
        raise ValueError("width and height must be positive multiples of 8")
    if not 0 <= shade <= 255:
        raise ValueError("shade must be 0..255")
    # Quantiser 8 on every coefficient: a flat block of level-shifted value v has DC 8v -> v.
    dc = shade - 128
    category = abs(dc).bit_length()
    dc_symbols = [0] if category == 0 else [0, category]
    bits: list[int] = []

    def put(value: int, length: int) -> None:
        bits.extend((value >> (length - 1 - i)) & 1 for i in range(length))

    blocks = (width // 8) * (height // 8)
    for index in range(blocks):
        if index == 0 and category:
            put(0b10, 2)  # code of the symbol `category`
            put(dc if dc > 0 else dc + (1 << category) - 1, category)
        else:
            put(0b0, 1)  # DC difference of category 0
        put(0b0, 1)  # AC: End Of Block
    bits.extend([1] * (-len(bits) % 8))
    scan = bytearray()
    for i in range(0, len(bits), 8):
        byte = int("".join(map(str, bits[i : i + 8])), 2)
        scan.append(byte)
        if byte == 0xFF:
            scan.append(0x00)
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            _segment(0xDB, bytes([0]) + bytes([8] * 64)),
            _segment(0xC0, bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x01\x01\x11\x00"),
            _segment(0xC4, _huffman_table(0, dc_symbols)),
            _segment(0xC4, _huffman_table(1, [0x00])),
            _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            bytes(scan),
            b"\xff\xd9",
        )
    )
