"""test_malformed: every damaged or hostile model file is refused cleanly by `ldm info`.

The files are generated here, from the ldm-inpaint-tiny fixture (read from LDM_SHARED_DIR,
never written) and programmatically: truncations, bit flips, lying safetensors headers, broken
zip structures, compressed records, hostile pickles. For each, `ldm info FILE` must exit with
status 2 (not a signal), print an error that names the file and says what is wrong (the
expected words are checked), and show no sanitizer report. Pickles that would run os.system
or eval if they were executed would create a canary file; it must not appear.

Controls: the unmodified fixture files, and a checkpoint rebuilt by this script's zip writer,
must load (exit 0), so each failure is due to its damage. Python 3 standard library only.
"""
import io
import json
import os
import pickletools
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile

LDM = os.environ["LDM_EXE"]
SHARED = os.environ.get("LDM_SHARED_DIR", "")
FIXTURE = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny")
FORBIDDEN = ("AddressSanitizer", "LeakSanitizer", "runtime error", "Segmentation", "CRITICAL",
             "WARNING **")


# ------------------------------------------------------------------ safetensors

def st_split(data):
    """(header dict in file order, data buffer) of a safetensors file."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def st_join(header, buffer):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + buffer


def st_with_length(data, length):
    return struct.pack("<Q", length) + data[8:]


def tensors_by_offset(header):
    return sorted((k for k in header if k != "__metadata__"),
                  key=lambda k: header[k]["data_offsets"])


# ------------------------------------------------------------------ zip

def zip_directory(data):
    """The end record's offset and fields, and the central directory entries (with where
    each one and its local header are)."""
    end = data.rindex(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack("<HII", data[end + 10:end + 20])
    entries, pos = [], cd_offset
    for _ in range(count):
        fields = struct.unpack("<IHHHHHHIIIHHHHHII", data[pos:pos + 46])
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        entries.append({"at": pos, "name": data[pos + 46:pos + 46 + name_len].decode(),
                        "local": fields[16], "size": fields[9]})
        pos += 46 + name_len + extra_len + comment_len
    return end, cd_offset, cd_size, entries


def patch(data, offset, fmt, *values):
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def write_zip(records, deflate=()):
    """A zip of (name, bytes) records, stored unless named in `deflate`."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are wanted in one case
        with zipfile.ZipFile(buffer, "w") as z:
            for name, data in records:
                info = zipfile.ZipInfo(name, date_time=(2021, 6, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
                z.writestr(info, data)
    return buffer.getvalue()


# ------------------------------------------------------------------ pickle

def p_str(text):
    raw = text.encode() if isinstance(text, str) else text
    return b"X" + struct.pack("<I", len(raw)) + raw


def p_int(n):
    if -2**31 <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    return b"\x8a\x08" + struct.pack("<q", n)


def p_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def p_tuple(*items):
    return b"(" + b"".join(items) + b"t"


P2 = b"\x80\x02"  # PROTO 2, as torch.save writes
P_ODICT = p_global("collections", "OrderedDict") + b")R"


def p_dict(*pairs):
    body = b"".join(k + v for k, v in pairs)
    return b"}" + (b"(" + body + b"u" if pairs else b"")


def p_storage(key="0", numel=1000, cls="FloatStorage"):
    return p_tuple(p_str("storage"), p_global("torch", cls), p_str(key), p_str("cpu"),
                   p_int(numel)) + b"Q"


def p_tensor(storage=None, offset=0, size=(1000,), stride=(1,)):
    storage = p_storage() if storage is None else storage
    return (p_global("torch._utils", "_rebuild_tensor_v2")
            + p_tuple(storage, p_int(offset), p_tuple(*map(p_int, size)),
                      p_tuple(*map(p_int, stride)), b"\x89", P_ODICT) + b"R")


def p_checkpoint(*state_pairs):
    """A Lightning-like checkpoint: {'epoch': 1, 'state_dict': {pairs}}."""
    return b"\x80\x02" + p_dict((p_str("epoch"), p_int(1)),
                                (p_str("state_dict"), p_dict(*state_pairs))) + b"."


def p_os_system(command):
    return p_global("os", "system") + p_str(command) + b"\x85R"


# ------------------------------------------------------------------ cases

class Cases:
    """Runs each case as it is added, so that only one damaged file exists at a time."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.passed = self.failed = self.count = 0

    def report(self, ok, label, detail):
        self.passed += ok
        self.failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {label}: {detail}", flush=True)

    def add(self, name, data, expect, canary=None):
        self.count += 1
        ok, detail = run_case(self.tmp, name, data, expect, canary)
        self.report(ok, name, detail)

    def control(self, name, data):
        ok, detail = run_control(self.tmp, name, data)
        self.report(ok, f"control {name} loads", "exit status 0" if ok else detail)

    def canary(self, name):
        """A path that a pickle's command would create if it were ever executed."""
        path = os.path.join(self.tmp, f"CANARY-{name}")
        return path, f"touch {path}"


def synthetic_cases(c):
    c.add("empty-file", b"", "too short")
    c.add("seven-bytes", b"\x10\x00\x00\x00\x00\x00\x00", "too short")
    c.add("text-file", b"This is a text file, not a model.\n" * 4, "not a safetensors file")
    c.add("png-header", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40), "not a safetensors file")
    c.add("legacy-torch-pickle",
          b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.", "legacy")
    c.add("plain-zip-not-torch", write_zip([("hello.txt", b"hello")]), "no data.pkl in the zip")
    c.add("empty-zip", b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18), "no data.pkl")
    c.add("st-json-array", st_join(b"[1, 2, 3]", b""), "not a JSON object")
    c.add("st-json-string", st_join(b'"hello"', b""), "not a JSON object")
    c.add("st-no-tensors", st_join(b"{}", b""), "holds no tensors")
    c.add("st-only-metadata", st_join({"__metadata__": {"format": "pt"}}, b""), "holds no tensors")
    c.add("st-deep-json", st_join(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}", b""),
          "nested deeper")
    c.add("st-deep-metadata",
          st_join(b'{"__metadata__":{"a":' + b"{\"b\":" * 50 + b"1" + b"}" * 50 + b"}}", b""),
          "nested deeper")
    c.add("st-json-comment", st_join(b'{/* c */"a":{"dtype":"F32","shape":[1],'
                                     b'"data_offsets":[0,4]}}', bytes(4)), "safetensors header")
    c.add("st-empty-name", st_join({"": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                                   bytes(4)), "safetensors header")
    c.add("st-nine-dims", st_join({"a": {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]}},
                                  bytes(4)), "at most 8")

    # Hostile pickles: never executed, whatever they name.
    path, touch = c.canary("os-system-top")
    c.add("pickle-os-system-top-level",
          write_zip([("archive/data.pkl", P2 + p_os_system(touch) + b".")]),
          "object made by os.system, not a dict", path)
    path, touch = c.canary("os-system-in-state-dict")
    c.add("pickle-os-system-in-state-dict",
          write_zip([("archive/data.pkl", p_checkpoint((p_str("x"), p_os_system(touch))))]),
          "holds no tensors", path)
    path, touch = c.canary("os-system-as-storage")
    c.add("pickle-os-system-as-storage",
          write_zip([("archive/data.pkl",
                      p_checkpoint((p_str("w"), p_tensor(storage=p_os_system(touch)))))]),
          "not from a storage", path)
    path, touch = c.canary("stack-global-eval")
    evil = (b"\x80\x04" + b"\x8c\x08builtins\x8c\x04eval\x93"
            + p_str(f"__import__('os').system('{touch}')") + b"\x85R.")
    c.add("pickle-stack-global-eval", write_zip([("archive/data.pkl", evil)]),
          "object made by builtins.eval", path)
    path, touch = c.canary("newobj-build")
    evil = (P2 + p_global("subprocess", "Popen") + p_tuple(p_str("sh"), p_str("-c"), p_str(touch))
            + b"\x81" + p_dict((p_str("x"), p_os_system(touch))) + b"b.")
    c.add("pickle-newobj-build-popen", write_zip([("archive/data.pkl", evil)]),
          "object made by subprocess.Popen", path)


def safetensors_cases(c, st):
    header, buffer = st_split(st)
    n = struct.unpack("<Q", st[:8])[0]
    order = tensors_by_offset(header)
    first = next(k for k in order if header[k]["shape"])  # the first by offset, not a scalar
    last = order[-1]

    def edited(change):
        h = json.loads(json.dumps(header))
        change(h)
        return st_join(h, buffer)

    def set_field(name, field, value):
        return lambda h: h[name].__setitem__(field, value)

    c.add("st-truncated-in-length", st[:5], "too short")
    c.add("st-truncated-after-length", st[:8], "does not fit the file")
    c.add("st-truncated-mid-json", st[:8 + n // 2], "does not fit the file")
    c.add("st-truncated-after-json", st[:8 + n], "past the data")
    c.add("st-truncated-mid-data", st[:8 + n + len(buffer) // 2], "past the data")
    c.add("st-truncated-last-byte", st[:-1], "past the data")
    c.add("st-extra-byte", st + b"\x00", "cover")
    c.add("st-length-zero", st_with_length(st, 0), "does not fit the file")
    c.add("st-length-bit-62", st_with_length(st, n | 1 << 62), "does not fit the file")
    c.add("st-length-bit-31", st_with_length(st, n | 1 << 31), "does not fit the file")
    c.add("st-length-all-ones", st_with_length(st, 2**64 - 1), "does not fit the file")
    c.add("st-length-minus-one", st_with_length(st, n - 1), "safetensors header")
    c.add("st-length-plus-one", st_with_length(st, n + 1), "safetensors header")
    json_start = 8
    colon = st.index(b":", json_start)
    c.add("st-json-colon-flipped", patch(st, colon, "B", st[colon] ^ 0x01), "safetensors header")
    c.add("st-json-brace-flipped", patch(st, json_start, "B", ord("{") ^ 0x40), "not a JSON object")
    quote = st.index(b'"', json_start + 2)
    c.add("st-json-invalid-utf8", patch(st, quote + 1, "B", 0xff), "not valid UTF-8")
    c.add("st-json-nul-byte", patch(st, quote + 1, "B", 0x00), "NUL")
    end_brace = st.rindex(b"}", 8, 8 + n)
    c.add("st-json-unclosed", patch(st, end_brace, "B", ord(" ")), "safetensors header")
    c.add("st-offsets-past-eof", edited(lambda h: h[last].__setitem__(
        "data_offsets", [x + len(buffer) for x in h[last]["data_offsets"]])), "past the data")
    # Two tensors at the same bytes: an overlap (and the bytes of the second are uncovered).
    same = next((a, b) for a, b in zip(order, order[1:])
                if header[a]["dtype"] == header[b]["dtype"] and header[a]["shape"] == header[b]["shape"])
    c.add("st-offsets-overlap", edited(lambda h: h[same[1]].__setitem__(
        "data_offsets", list(h[same[0]]["data_offsets"]))), "overlaps")
    shifted = json.loads(json.dumps(header))
    shifted[last]["data_offsets"] = [x + 4 for x in header[last]["data_offsets"]]
    c.add("st-offsets-gap", st_join(shifted, buffer + bytes(4)), "a gap in the data")
    c.add("st-offsets-reversed", edited(set_field(first, "data_offsets",
                                                  header[first]["data_offsets"][::-1])), "reversed")
    c.add("st-offsets-negative", edited(set_field(first, "data_offsets", [-4, 0])),
          "not non-negative integers")
    c.add("st-offsets-strings", edited(set_field(first, "data_offsets", ["0", "4"])),
          "not non-negative integers")
    c.add("st-offsets-one", edited(set_field(first, "data_offsets", [0])), "not an array [begin, end]")
    c.add("st-offsets-floats", edited(set_field(first, "data_offsets", [0.0, 4.0])),
          "not non-negative integers")
    c.add("st-shape-mismatch", edited(lambda h: h[first].__setitem__(
        "shape", [h[first]["shape"][0] + 1] + h[first]["shape"][1:])), "the shape and dtype need")
    c.add("st-shape-huge", edited(set_field(first, "shape", [2**62, 4])), "overflows")
    c.add("st-shape-2-32-squared", edited(set_field(first, "shape", [2**32, 2**32])), "overflows")
    c.add("st-shape-negative", edited(set_field(first, "shape", [-1, 1000])), "non-negative integer")
    c.add("st-shape-float", edited(set_field(first, "shape", [1000.0])), "non-negative integer")
    c.add("st-shape-bool", edited(set_field(first, "shape", [True])), "non-negative integer")
    c.add("st-shape-null", edited(set_field(first, "shape", None)), "shape is not an array")
    c.add("st-dtype-unknown", edited(set_field(first, "dtype", "F31")), "unknown dtype 'F31'")
    c.add("st-dtype-lowercase", edited(set_field(first, "dtype", "f32")), "unknown dtype 'f32'")
    c.add("st-dtype-number", edited(set_field(first, "dtype", 7)), "dtype is not a string")
    c.add("st-dtype-size-mismatch", edited(set_field(first, "dtype", "F64")), "the shape and dtype need")
    c.add("st-missing-shape", edited(lambda h: h[first].pop("shape")),
          "needs dtype, shape and data_offsets")
    c.add("st-extra-member", edited(set_field(first, "requires_grad", False)), "members other than")
    c.add("st-entry-not-object", edited(lambda h: h.__setitem__(first, [1, 2])), "not an object")
    c.add("st-metadata-not-object", edited(lambda h: h.__setitem__("__metadata__", "pt")),
          "__metadata__ is not an object")
    c.add("st-metadata-number", edited(lambda h: h.__setitem__("__metadata__", {"format": 1})),
          "is not a string")
    text = json.dumps(header)
    entry = json.dumps({first: header[first]})[1:-1]
    c.add("st-duplicate-key", st_join(("{" + entry + ", " + text[1:]).encode(), buffer),
          f"key '{first}' appears twice")
    c.add("st-leading-space", st_join((" " + text).encode(), buffer), "not a JSON object")
    c.add("st-trailing-garbage", st_join((text + " x").encode(), buffer), "safetensors header")


def zip_cases(c, ck):
    end, cd_offset, cd_size, entries = zip_directory(ck)
    names = [e["name"] for e in entries]
    pickle_entry = entries[names.index("archive/data.pkl")]
    storage_entry = entries[names.index("archive/data/3")]
    last = max(entries, key=lambda e: e["local"])
    with zipfile.ZipFile(io.BytesIO(ck)) as z:
        records = [(n, z.read(n)) for n in names]
    by_name = dict(records)
    pickle = by_name["archive/data.pkl"]

    def without(name):
        return [r for r in records if r[0] != name]

    def with_pickle(data):
        return [("archive/data.pkl", data)] + without("archive/data.pkl")

    c.add("zip-truncated-half", ck[:len(ck) // 2], "no end of central directory")
    c.add("zip-truncated-mid-central-directory", ck[:cd_offset + cd_size // 2],
          "no end of central directory")
    c.add("zip-truncated-mid-end-record", ck[:end + 11], "no end of central directory")
    c.add("zip-truncated-last-byte", ck[:-1], "no end of central directory")
    # Cut inside the last local header, then put the directory back after it.
    # Cut inside the last local header, then put the directory and end records back after it
    # (their offsets moved: the end record, the ZIP64 end record and its locator point anew).
    cut = last["local"] + 15
    end64 = ck.rindex(b"PK\x06\x06")
    tail = patch(ck[cd_offset:], end - cd_offset + 16, "<I", cut)
    tail = patch(tail, end64 - cd_offset + 48, "<Q", cut)
    tail = patch(tail, end - 20 - cd_offset + 8, "<Q", cut + end64 - cd_offset)
    c.add("zip-truncated-mid-local-header", ck[:cut] + tail,
          f"the local header of record '{last['name']}'")
    c.add("zip-end-signature", patch(ck, end, "<I", 0x06054b51), "no end of central directory")
    # torch writes ZIP64 end records even for small files; both records must agree.
    c.add("zip-end-records-disagree", patch(ck, end + 16, "<I", cd_offset + 46), "disagree")
    c.add("zip-directory-outside",
          patch(patch(ck, end + 16, "<I", 0xffffffff), end64 + 48, "<Q", len(ck) + 100),
          "lies outside the file")
    c.add("zip-directory-size-huge",
          patch(patch(ck, end + 12, "<I", 0xffffffff), end64 + 40, "<Q", 2**63), "lies outside the file")
    c.add("zip-entry-count-huge",
          patch(patch(ck, end + 8, "<HH", 0xffff, 0xffff), end64 + 24, "<QQ", 2**40, 2**40),
          "cannot fit")
    c.add("zip-zip64-record-signature", patch(ck, end64, "<I", 0x06064b51),
          "ZIP64 locator points to no ZIP64 end record")
    c.add("zip-zip64-locator-to-nowhere",
          ck[:end] + struct.pack("<IIQI", 0x07064b50, 0, 2**40, 1) + ck[end:],
          "ZIP64 locator points to no ZIP64 end record")
    c.add("zip-multi-disk", patch(ck, end + 4, "<H", 1), "multi-part")
    c.add("zip-multi-disk-zip64", patch(ck, end64 + 16, "<I", 3), "multi-part")
    # The same without ZIP64 records (as Python's zipfile writes small zips).
    plain = write_zip(records)
    plain_end = plain.rindex(b"PK\x05\x06")
    c.add("zip-plain-directory-outside", patch(plain, plain_end + 16, "<I", len(plain) + 100),
          "lies outside the file")
    c.add("zip-plain-entry-count-huge", patch(plain, plain_end + 8, "<HH", 65000, 65000), "cannot fit")
    c.add("zip-plain-asks-zip64", patch(plain, plain_end + 16, "<I", 0xffffffff),
          "asks for ZIP64 values but there is no ZIP64 end record")
    first = entries[0]["at"]
    c.add("zip-central-signature", patch(ck, first, "<I", 0x02014b51), "bad signature")
    c.add("zip-central-name-length", patch(ck, first + 28, "<H", 0xffff), "runs past the directory")
    c.add("zip-central-extra-malformed",
          patch(patch(ck, first + 30, "<H", 4), first + 46 + len(entries[0]["name"]), "<HH", 1, 40),
          "damaged zip")
    c.add("zip-local-offset-outside", patch(ck, storage_entry["at"] + 42, "<I", 0xffffff00),
          "lies outside the file")
    c.add("zip-first-signature", patch(ck, 0, "<I", 0x04034b51), "not a safetensors file")
    c.add("zip-local-signature", patch(ck, storage_entry["local"], "<I", 0x04034b51), "no local header")
    c.add("zip-local-name", patch(ck, storage_entry["local"] + 30, "B", ord("X")), "does not match")
    c.add("zip-record-past-eof", patch(ck, storage_entry["at"] + 20, "<II", len(ck), len(ck)),
          "runs past the end of the file")
    c.add("zip-sizes-differ", patch(ck, storage_entry["at"] + 20, "<I", 12), "two different sizes")
    c.add("zip-encrypted", patch(ck, storage_entry["at"] + 8, "<H", 0x0809), "encrypted")
    c.add("zip-method-in-central", patch(ck, storage_entry["at"] + 10, "<H", 8), "compressed (method 8)")
    c.add("zip-method-in-local", patch(ck, storage_entry["local"] + 8, "<H", 12),
          "compressed (method 12)")
    c.add("zip-pickle-bit-flip", patch(ck, pickle_entry["local"] + 30 + 16 + 200, "B",
                                       ck[pickle_entry["local"] + 30 + 16 + 200] ^ 0x10), "CRC check")
    c.add("zip-deflated-storage", write_zip(records, deflate={"archive/data/3"}),
          "record 'archive/data/3' is compressed (method 8)")
    c.add("zip-deflated-pickle", write_zip(records, deflate={"archive/data.pkl"}),
          "record 'archive/data.pkl' is compressed")
    c.add("zip-no-data-pkl", write_zip(without("archive/data.pkl")), "no data.pkl in the zip")
    c.add("zip-two-data-pkl", write_zip(records + [("other/data.pkl", pickle)]), "two data.pkl")
    c.add("zip-record-outside-folder", write_zip(records + [("stray.txt", b"x")]),
          "outside the checkpoint's folder")
    c.add("zip-duplicate-record", write_zip(records + [("archive/data/3", by_name["archive/data/3"])]),
          "appears twice")
    c.add("zip-missing-storage", write_zip(without("archive/data/3")),
          "refers to storage '3' which is not in the zip")
    c.add("zip-short-storage",
          write_zip(without("archive/data/3") + [("archive/data/3", by_name["archive/data/3"][:-4])]),
          "bytes in the zip")
    c.add("zip-pickle-truncated", write_zip(with_pickle(pickle[:len(pickle) // 2])), "data.pkl")
    c.add("zip-pickle-no-stop", write_zip(with_pickle(pickle[:-1])), "without a STOP")
    persid = next(pos for op, _, pos in pickletools.genops(pickle) if op.name == "BINPERSID")
    c.add("zip-pickle-unknown-opcode",
          write_zip(with_pickle(pickle[:persid] + b"\xfe" + pickle[persid + 1:])),
          f"pickle opcode 0xfe at offset {persid} is not supported")
    c.add("zip-pickle-protocol-6", write_zip(with_pickle(b"\x80\x06" + pickle[2:])), "protocol 6")

    def pk(name, data, expect):
        c.add(name, write_zip(with_pickle(data)), expect)

    def w(tensor):  # a checkpoint whose state_dict is {'w': tensor}
        return p_checkpoint((p_str("w"), tensor))

    pk("pickle-missing-storage-key", w(p_tensor(p_storage("99999"))),
       "refers to storage '99999' which is not in the zip")
    pk("pickle-size-exceeds-storage", w(p_tensor(size=(1001,))),
       "needs 4004 bytes but its data has 4000")
    pk("pickle-stride-exceeds-storage", w(p_tensor(size=(10, 10), stride=(200, 1))),
       "needs 7240 bytes")
    pk("pickle-offset-exceeds-storage", w(p_tensor(offset=990, size=(20,))),
       "needs 80 bytes but its data has 40")
    pk("pickle-offset-past-storage", w(p_tensor(offset=2000, size=(0,))),
       "starts past the end of its storage")
    pk("pickle-offset-huge", w(p_tensor(offset=2**62, size=(1,))),
       "starts past the end of its storage")
    pk("pickle-negative-stride", w(p_tensor(size=(10,), stride=(-1,))),
       "impossible shape or stride")
    pk("pickle-negative-size", w(p_tensor(size=(-10,), stride=(1,))),
       "impossible shape or stride")
    pk("pickle-huge-size", w(p_tensor(size=(2**62, 8), stride=(8, 1))),
       "impossible shape or stride")
    pk("pickle-stride-0-amplified", w(p_tensor(size=(2**31, 2**31), stride=(0, 0))),
       "more than its storage '0' holds (1000)")
    pk("pickle-negative-offset", w(p_tensor(offset=-1)), "malformed offset")
    pk("pickle-size-stride-lengths", w(p_tensor(size=(10, 10), stride=(1,))),
       "malformed offset, size or stride")
    pk("pickle-nine-dims", w(p_tensor(size=(1,) * 9, stride=(1,) * 9)), "at most 8")
    pk("pickle-negative-numel", w(p_tensor(p_storage(numel=-1))), "not a torch storage")
    pk("pickle-wrong-numel", w(p_tensor(p_storage(numel=999), size=(999,))), "bytes in the zip")
    pk("pickle-unsupported-storage",
       w(p_tensor(p_storage(cls="ComplexFloatStorage", numel=500), size=(500,))),
       "torch.ComplexFloatStorage, which is not supported")
    pk("pickle-storage-class-os-system",
       w(p_tensor(p_tuple(p_str("storage"), p_global("os", "system"), p_str("0"), p_str("cpu"),
                          p_int(1000)) + b"Q")),
       "not a torch storage")
    pk("pickle-persistent-id-string", P2 + p_str("storage") + b"Q.", "persistent id")
    pk("pickle-rebuild-wrong-arity",
       w(p_global("torch._utils", "_rebuild_tensor_v2") + p_tuple(p_storage()) + b"R"),
       "rebuilt with wrong arguments")
    pk("pickle-invalid-utf8-name", p_checkpoint((p_str(b"\xff\xfe"), p_tensor())),
       "not a valid tensor name")
    pk("pickle-duplicate-name", p_checkpoint((p_str("w"), p_tensor()), (p_str("w"), p_tensor())),
       "tensor 'w' appears twice")
    pk("pickle-memo-out-of-range", P2 + b"}h\xc8.", "memo index 200 at offset 3 was never set")
    pk("pickle-long-binput-huge", P2 + b"}r\xff\xff\xff\xff.", "memo index 4294967295")
    pk("pickle-stack-underflow", P2 + b"R.", "stack underflow")
    pk("pickle-stop-on-empty", P2 + b".", "stack underflow")
    pk("pickle-pop-mark-without-mark", P2 + b"}1.", "needs a MARK")
    pk("pickle-unknown-opcode", P2 + b"}\xff.", "pickle opcode 0xff at offset 3 is not supported")
    pk("pickle-ext1", P2 + b"\x82\x01.", "pickle opcode 0x82")
    pk("pickle-text-persid", P2 + b"P0\n.", "pickle opcode 0x50")
    pk("pickle-empty", b"", "without a STOP")
    pk("pickle-mark-on-empty-stack", P2 + b"(1(t.", "is a tuple, not a dict")
    pk("pickle-100000-marks", P2 + b"(" * 100000 + b".", "stack underflow")
    pk("pickle-100000-lists", P2 + b"]" * 100000 + b"a" * 99999 + b".", "is a list, not a dict")
    pk("pickle-100000-tuples", P2 + b"(" * 100000 + b"t" * 100000 + b".",
       "is a tuple, not a dict")
    pk("pickle-100000-dicts", P2 + b"}" + b"K\x01}" * 100000 + b"s" * 100000 + b".",
       "holds no tensors")
    pk("pickle-huge-binunicode", P2 + b"X\xff\xff\xff\xffabc.", "truncated")
    pk("pickle-huge-binunicode8", b"\x80\x04\x8d" + struct.pack("<Q", 2**63) + b"abc.", "truncated")
    pk("pickle-huge-long4", P2 + b"\x8b\xff\xff\xff\x7f.", "truncated")
    pk("pickle-negative-binstring", P2 + b"T\xff\xff\xff\xffabc.", "negative length")
    pk("pickle-global-without-newline", P2 + b"cos", "no end of line")
    pk("pickle-setitems-odd", P2 + b"}(K\x01u.", "odd number")
    pk("pickle-append-to-int", P2 + b"K\x01K\x02a.", "adds items to an int")
    pk("pickle-top-level-list", P2 + b"].", "is a list, not a dict")
    pk("pickle-top-level-none", P2 + b"N.", "is None, not a dict")
    return write_zip(records)


def run_case(tmp, name, data, expect, canary):
    path = os.path.join(tmp, name + (".ckpt" if data[:2] == b"PK" else ".safetensors"))
    with open(path, "wb") as f:
        f.write(data)
    try:
        r = subprocess.run([LDM, "info", path], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    finally:
        os.unlink(path)
    problems = []
    if r.returncode != 2:
        problems.append(f"exit status {r.returncode}, not 2")
    if not r.stderr.strip():
        problems.append("nothing on stderr")
    if path not in r.stderr:
        problems.append("the message does not name the file")
    if expect and expect not in r.stderr:
        problems.append(f"the message lacks '{expect}'")
    for word in FORBIDDEN:
        if word in r.stderr:
            problems.append(f"'{word}' on stderr")
    if canary and os.path.exists(canary):
        problems.append("the canary file exists: the pickle was EXECUTED")
    message = r.stderr.strip().splitlines()[0] if r.stderr.strip() else ""
    if problems:
        return False, "; ".join(problems) + f" [{message[:300]}]"
    return True, message


def run_control(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    r = subprocess.run([LDM, "info", path], capture_output=True, text=True, timeout=120)
    os.unlink(path)
    return r.returncode == 0, f"exit status {r.returncode}: {r.stderr.strip()[:300]}"


def main():
    with tempfile.TemporaryDirectory(prefix="ldm-malformed-") as tmp:
        c = Cases(tmp)
        if os.path.isfile(os.path.join(FIXTURE, "model.ckpt")):
            # The fixture's config beside every file: the intact files load, so each refusal
            # below is due to the damage.
            shutil.copy(os.path.join(FIXTURE, "config.yaml"), os.path.join(tmp, "config.yaml"))
            with open(os.path.join(FIXTURE, "model.safetensors"), "rb") as f:
                st = f.read()
            with open(os.path.join(FIXTURE, "model.ckpt"), "rb") as f:
                ck = f.read()
            c.control("intact.safetensors", st)
            c.control("intact.ckpt", ck)
            synthetic_cases(c)
            safetensors_cases(c, st)
            c.control("rebuilt-by-this-test.ckpt", zip_cases(c, ck))
        else:
            print(f"# no fixture at {FIXTURE}: synthetic cases only")
            synthetic_cases(c)
        print(f"# {c.count} malformed files")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
