"""torchzip_writer: writes PyTorch-style zip checkpoints without PyTorch, for the tests.

The layout is the one torch.save produces (see ../shared/notes/ldm-models.md section 6): every
record STORED, data 64-byte aligned through the local header's extra field, records under
"archive/", data.pkl (pickle protocol 2) whose tensors are _rebuild_tensor_v2 calls on
persistent storages. Storage data may be left as holes (sparse files) so that multi-gigabyte
checkpoints cost no disk. ZIP64 structures are written when an offset or size needs them.
"""
import collections
import io
import pickle
import struct
import sys
import types
import zlib

# Stand-ins for the torch globals a checkpoint names; pickle looks them up by module and name.
_torch = sys.modules.setdefault("torch", types.ModuleType("torch"))
_utils = sys.modules.setdefault("torch._utils", types.ModuleType("torch._utils"))
if not hasattr(_utils, "_rebuild_tensor_v2"):
    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise RuntimeError("stand-in")
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    _torch._utils = _utils
    for _name in ("FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage",
                  "LongStorage", "IntStorage", "ByteStorage"):
        _cls = type(_name, (), {})
        _cls.__module__ = "torch"
        setattr(_torch, _name, _cls)

ELEMENT_SIZE = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
                "DoubleStorage": 8, "LongStorage": 8, "IntStorage": 4, "ByteStorage": 1}


class Storage:
    def __init__(self, key, kind, numel, data=None):
        self.key, self.kind, self.numel, self.data = key, kind, numel, data

    @property
    def nbytes(self):
        return self.numel * ELEMENT_SIZE[self.kind]


class Tensor:
    def __init__(self, storage, offset, size, stride=None):
        if stride is None:
            stride, acc = [], 1
            for n in reversed(size):
                stride.insert(0, acc)
                acc *= n
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def __reduce__(self):
        return (_utils._rebuild_tensor_v2,
                (self.storage, self.offset, self.size, self.stride, False,
                 collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(_torch, obj.kind), obj.key, "cpu", obj.numel)
        return None


def pickle_state(obj):
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _crc_of(storage):
    if storage.data is not None:
        return zlib.crc32(storage.data)
    crc, left, zeros = 0, storage.nbytes, bytes(1 << 22)
    while left:
        n = min(left, len(zeros))
        crc = zlib.crc32(zeros[:n], crc)
        left -= n
    return crc


def write(path, obj, storages, prefix="archive", force_zip64=False, compute_crc=True):
    """Writes `obj` (pickled as data.pkl) and the given storages (data None = zero hole)."""
    records = [(f"{prefix}/data.pkl", pickle_state(obj), None)]
    for s in storages:
        records.append((f"{prefix}/data/{s.key}", s.data, s))
    records.append((f"{prefix}/version", b"3\n", None))

    central = []
    with open(path, "wb") as f:
        for name, data, storage in records:
            size = len(data) if data is not None else storage.nbytes
            crc = zlib.crc32(data) if data is not None else (_crc_of(storage) if compute_crc else 0)
            offset = f.tell()
            zip64 = force_zip64 or size >= 0xFFFFFFFF or offset >= 0xFFFFFFFF
            name_b = name.encode()
            extra = struct.pack("<HHQQ", 1, 16, size, size) if zip64 else b""
            # Pad with an extra field so the data starts 64-byte aligned, as torch does.
            header_len = 30 + len(name_b) + len(extra)
            pad = (-(offset + header_len + 4)) % 64
            extra += struct.pack("<HH", 0x4650, pad) + b"Z" * pad
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, 0, 0, 0, 0,
                                crc, 0xFFFFFFFF if zip64 else size,
                                0xFFFFFFFF if zip64 else size, len(name_b), len(extra)))
            f.write(name_b + extra)
            if data is not None:
                f.write(data)
            else:
                f.seek(size, io.SEEK_CUR)  # a hole: no disk used
            central.append((name_b, crc, size, offset, zip64))

        cd_start = f.tell()
        for name_b, crc, size, offset, zip64 in central:
            if zip64:
                extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
            else:
                extra = b""
            f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45 if zip64 else 20, 0, 0,
                                0, 0, crc, 0xFFFFFFFF if zip64 else size,
                                0xFFFFFFFF if zip64 else size, len(name_b), len(extra), 0, 0, 0,
                                0, 0xFFFFFFFF if zip64 else offset))
            f.write(name_b + extra)
        cd_end = f.tell()
        n, cd_size = len(central), cd_end - cd_start
        if force_zip64 or any(c[4] for c in central) or cd_start >= 0xFFFFFFFF:
            f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size,
                                cd_start))
            f.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
            f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                                0xFFFFFFFF, 0))
        else:
            f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_start, 0))
