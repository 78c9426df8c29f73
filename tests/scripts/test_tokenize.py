"""`ldm tokenize`: CLIP's token ids of every prompt of ../shared/fixtures/clip-text-tiny equal
OpenAI's (reference.safetensors `promptNN.ids`, read here with the standard library), with
the built-in merges, the shared copy, and a diffusers tokenizer/ (merges.txt + vocab.json)
beside a model; long prompts print their 75-token chunks; the cleaning of odd texts equals
Python's (html.unescape, NFC, str.lower); bad use and bad files exit 2."""
import gzip
import html
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import unicodedata

LDM = os.environ["LDM_EXE"]
SHARED = os.environ.get("LDM_SHARED_DIR", "")
FIXTURE = os.path.join(SHARED, "fixtures", "clip-text-tiny")
MERGES = os.path.join(SHARED, "tokenizers", "clip", "bpe_simple_vocab_16e6.txt.gz")
START, END = 49406, 49407

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok' if ok else 'FAIL'}: {name}{': ' + detail if detail and not ok else ''}")


def ldm(*args):
    return subprocess.run([LDM, "tokenize", *args], capture_output=True, timeout=120)


def rows(r):
    return [[int(x) for x in line.split()] for line in r.stdout.decode().splitlines()]


def read_i32_tensors(path):
    """{name: list of ints} of the I32 tensors of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name != "__metadata__" and info["dtype"] == "I32":
            a, b = info["data_offsets"]
            raw = data[8 + n + a:8 + n + b]
            out[name] = list(struct.unpack(f"<{len(raw) // 4}i", raw))
    return out


def diffusers_tokenizer(folder):
    """tokenizer/merges.txt + vocab.json as diffusers ships them, made from CLIP's merges: the
    vocabulary is the byte symbols, the same with </w>, the merges, the two specials."""
    lines = gzip.open(MERGES).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    kept = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    symbols = [chr(b) for b in kept] + [chr(256 + i) for i in range(256 - len(kept))]
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in lines]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(os.path.join(folder, "tokenizer"))
    with open(os.path.join(folder, "tokenizer", "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(lines) + "\n")
    with open(os.path.join(folder, "tokenizer", "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    model = os.path.join(folder, "model.safetensors")
    open(model, "wb").close()
    return model


# CLIP's \s (the `regex` module's: Unicode White_Space; Python's re would add U+001C..U+001F)
WHITE_SPACE = re.compile("[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f"
                         "\u205f\u3000]+")


def python_clean(text):
    """CLIP's cleaning by Python's own html, unicodedata and str (ftfy -> NFC, as the fixture)."""
    text = html.unescape(html.unescape(unicodedata.normalize("NFC", text))).strip()
    return WHITE_SPACE.sub(" ", text).strip().lower()


def random_texts(n):
    rng = random.Random(14)
    pieces = ["&", "&#", "&#x", ";", " ", "  ", "\t", "\n", "\xa0", "\u3000", "\u2028", "\x1c",
              "'s", "'LL", "'t", "'x", "don't", "<|endoftext|>", "Σ", "ΑΣ", "İ", "ǅ", "Ⅻ", "Ⓐ",
              "e\u0301", "q\u0303", "é", "ß", "ﬁ", "½", "中文", "🙂", "\u200b", "?!", "...", "-",
              "1", "23", "A", "WORLD", "Ünïcödé", "\x01", "\x7f", "\x85", "ſ"]
    names = ["amp", "lt", "gt", "quot", "apos", "nbsp", "copy", "eacute", "Eacute", "hellip",
             "mdash", "notin", "not", "ampx", "copy2024", "AMP", "lang", "bogus", "frac12",
             "Yuml", "euro", "hearts", "sigmaf"]
    numbers = ["0", "13", "39", "65", "128", "150", "159", "1", "11", "55296", "1114112",
               "41", "fdd0", "FFFE", "2603", "9999999999999999999"]
    texts = []
    for _ in range(n):
        out = []
        for _ in range(rng.randint(1, 20)):
            r = rng.random()
            if r < 0.2:
                out.append("&" + rng.choice(names) + rng.choice([";", "", " ", "x;", "&"]))
            elif r < 0.3:
                out.append("&#" + rng.choice(["", "x", "X"]) + rng.choice(numbers)
                           + rng.choice([";", "", "z"]))
            else:
                out.append(rng.choice(pieces))
        texts.append("".join(out))
    return texts


def main():
    if not os.path.isfile(os.path.join(FIXTURE, "prompts.json")):
        print("1..0 # SKIP fixture clip-text-tiny not found")
        return 0
    with open(os.path.join(FIXTURE, "prompts.json"), encoding="utf-8") as f:
        prompts = json.load(f)
    ref = read_i32_tensors(os.path.join(FIXTURE, "reference.safetensors"))

    with tempfile.TemporaryDirectory() as tmp:
        model = diffusers_tokenizer(os.path.join(tmp, "sd"))
        sources = {"built-in": [], "shared merges": ["--tokenizer", MERGES],
                   "diffusers tokenizer/": ["--model", model]}
        for source, args in sources.items():
            for i, prompt in enumerate(prompts):
                want = ref[f"prompt{i:02d}.ids"]
                r = ldm(*args, "--", prompt)
                got = rows(r)
                check(f"{source}: prompt {i} ids = OpenAI's", r.returncode == 0 and got
                      and got[0] == want, f"{r.stderr.decode()} got {got[:1]} want {want}")

        # A long prompt: the SD row, then ceil(n / 75) chunks, the first equal to it.
        long_prompt = prompts[-1]
        r = ldm("--", long_prompt)
        got = rows(r)
        sd = got[0] if got else []
        check("the fixture's last prompt fills the SD row", len(sd) == 77 and END not in sd[:76])
        ids = []
        for row in got[1:]:
            body = row[1:row.index(END, 1)] if END in row[1:] else row[1:]
            ids += body
        n = len(ids)
        check("long prompt: SD row + one line per chunk", len(got) == 1 + -(-n // 75) and n > 75
              and all(len(row) == 77 and row[0] == START for row in got), str(got))
        check("long prompt: first chunk = SD row", len(got) > 1 and got[1] == sd)
        check("long prompt: stderr says how many tokens", f"{n} tokens" in r.stderr.decode(),
              r.stderr.decode())
        twice = ldm("--", long_prompt + " " + long_prompt)
        more = rows(twice)
        joined = [x for row in more[1:] for x in row[1:row.index(END, 1)]]
        check("twice the prompt: twice the ids, in chunks", joined == ids + ids
              and len(more) == 1 + -(-2 * n // 75), str(more))
        short = rows(ldm("a photograph of an astronaut riding a horse"))
        check("a short prompt: one line", len(short) == 1 and short[0] == ref["prompt01.ids"])

        # The cleaning (--verbose prints it) against Python's own rules, on odd texts.
        texts = random_texts(60)
        bad = []
        for text in texts:
            r = ldm("--verbose", "--", text)
            lines = r.stderr.decode("utf-8", "replace").split("\n")
            got = next((l[6:] for l in lines if l.startswith("text: ")), None)
            if r.returncode or got != python_clean(text):
                bad.append((text, got, python_clean(text)))
        check(f"cleaning of {len(texts)} odd texts = Python's html/unicodedata/lower", not bad,
              repr(bad[:3]))

        # Bad use and bad files: exit 2 with a message.
        r = ldm()
        check("no text: exit 2 with usage", r.returncode == 2 and b"usage" in r.stderr)
        r = ldm("a", "b")
        check("two texts: exit 2", r.returncode == 2)
        r = ldm("--help")
        check("--help: exit 0, explains the rows", r.returncode == 0 and b"75" in r.stdout
              and b"chunk" in r.stdout)
        r = ldm("--tokenizer", os.path.join(tmp, "none.txt"), "x")
        check("missing tokenizer: exit 2 naming it", r.returncode == 2
              and b"none.txt" in r.stderr, r.stderr.decode())
        bad = os.path.join(tmp, "merges.txt")
        with open(bad, "wb") as f:
            f.write(b"#version: 0.2\nthis is not\x00a merges file\n")
        r = ldm("--tokenizer", bad, "x")
        check("garbage merges: exit 2 naming the line", r.returncode == 2
              and b"line 2" in r.stderr, r.stderr.decode())
        r = subprocess.run([LDM, "tokenize", b"caf\xe9"], capture_output=True, timeout=60,
                           env=dict(os.environ, LC_ALL="C.UTF-8"))
        check("Latin-1 bytes in a UTF-8 locale: exit 2, says UTF-8", r.returncode == 2
              and b"UTF-8" in r.stderr, r.stderr.decode())
        r = subprocess.run([LDM, "tokenize", "café"], capture_output=True, timeout=60,
                           env=dict(os.environ, LC_ALL="C"))
        check("UTF-8 text in the C locale: tokenized", r.returncode == 0
              and rows(r)[0] == rows(ldm("café"))[0], r.stderr.decode())

    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
