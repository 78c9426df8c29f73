"""A minimal PNG reader (8- or 16-bit grey, grey+alpha, RGB, RGBA; no interlace) and writer
(8 or 16 bits), so that the script tests need nothing beyond Python's standard library."""
import struct
import zlib


def read_png(path):
    """Returns (width, height, channels, rows, maxval): rows are lists of sample values,
    maxval 255 or 65535."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, info = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            info = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, depth, colour, _, _, interlace = info
    if depth not in (8, 16) or interlace != 0 or colour not in (0, 2, 4, 6):
        raise ValueError(f"{path}: only 8/16-bit, non-interlaced grey/RGB(A) PNGs are read here")
    samples = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    channels = samples * depth // 8  # bytes per pixel, for the filters
    raw, stride = zlib.decompress(idat), w * channels
    rows, prev = [], bytearray(stride)
    for y in range(h):
        start = y * (stride + 1)
        f, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    if depth == 16:
        rows = [[(r[i] << 8) | r[i + 1] for i in range(0, len(r), 2)] for r in rows]
    else:
        rows = [list(r) for r in rows]
    return w, h, samples, rows, (1 << depth) - 1


def png_chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff))


def write_png(path, width, height, channels, rows, depth=8, chunks=()):
    """A PNG (1 grey, 2 grey+alpha, 3 RGB or 4 RGBA channels) from rows of sample values
    (0..255, or 0..65535 with depth 16); `chunks` are (kind, body) pairs written before the
    pixels (gAMA, eXIf, ...)."""
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    if depth == 16:
        raw = b"".join(b"\0" + b"".join(struct.pack(">H", v) for v in r) for r in rows)
    else:
        raw = b"".join(b"\0" + bytes(r) for r in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n"
                + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour,
                                                 0, 0, 0))
                + b"".join(png_chunk(k, b) for k, b in chunks)
                + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def write_png_grey(path, width, height, rows):
    """An 8-bit grey PNG from rows of 0..255 values."""
    write_png(path, width, height, 1, rows)
