"""The plug-in's translations (po/): every translatable string of the sources is translated in
every language of po/LINGUAS, with the same printf conversions and a mnemonic where the English
has one, and the built catalogs (build/po/LANG/LC_MESSAGES/gimp-ldm.mo) translate. Prints TAP."""
import gettext
import os
import re
import shutil
import subprocess
import sys

SOURCE = os.environ["LDM_SOURCE_DIR"]
BUILD = os.environ["LDM_BUILD_DIR"]
PO = os.path.join(SOURCE, "po")

results = []


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))


def parse_po(path):
    """{msgid: msgstr} of a .po/.pot file (no plurals or contexts here)."""
    entries = {}
    text = open(path, encoding="utf-8").read()
    for block in text.split("\n\n"):
        parts = {"msgid": [], "msgstr": []}
        key = None
        for line in block.splitlines():
            m = re.match(r'(msgid|msgstr) (".*")$', line)
            if m:
                key = m.group(1)
                parts[key].append(m.group(2))
            elif line.startswith('"') and key:
                parts[key].append(line)
        if parts["msgid"]:
            # the literal is C-escaped UTF-8; decode escapes on the raw bytes
            def join(items):
                raw = "".join(i[1:-1] for i in items).encode("utf-8")
                return raw.decode("unicode_escape").encode("latin-1").decode("utf-8")
            entries[join(parts["msgid"])] = join(parts["msgstr"])
    return entries


def conversions(s):
    return re.findall(r"%[-+ #0]*\d*(?:\.\d+)?[a-zA-Z%]", s)


def source_strings():
    """The msgids xgettext finds in the files of po/POTFILES."""
    files = [os.path.join(SOURCE, line.strip()) for line in open(os.path.join(PO, "POTFILES"))
             if line.strip() and not line.startswith("#")]
    out = subprocess.run(["xgettext", "--from-code=UTF-8", "--keyword=_", "--keyword=N_",
                          "--language=C", "-o", "-", *files], capture_output=True, text=True,
                         check=True).stdout
    path = os.path.join(BUILD, "tests", "source-strings.pot")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(out)
    return {k for k in parse_po(path) if k}


def main():
    linguas = [l.strip() for l in open(os.path.join(PO, "LINGUAS")) if l.strip()
               and not l.startswith("#")]
    check("LINGUAS has German and French", {"de", "fr"} <= set(linguas), str(linguas))
    wanted = source_strings() if shutil.which("xgettext") else None
    for lang in linguas:
        po = {k: v for k, v in parse_po(os.path.join(PO, lang + ".po")).items() if k}
        if wanted is not None:
            missing = sorted(wanted - set(po))
            check(f"{lang}: every source string has an entry", not missing, repr(missing[:3]))
        empty = [k for k, v in po.items() if not v]
        check(f"{lang}: every entry is translated", not empty, repr(empty[:3]))
        bad = [k for k, v in po.items() if v and conversions(k) != conversions(v)]
        check(f"{lang}: the same printf conversions in the same order", not bad, repr(bad[:3]))
        bad = [k for k, v in po.items() if v and ("_" in k) != ("_" in v)]
        check(f"{lang}: a mnemonic wherever the English has one", not bad, repr(bad[:3]))
        mo = os.path.join(BUILD, "po", lang, "LC_MESSAGES", "gimp-ldm.mo")
        if not os.path.exists(mo):
            check(f"{lang}: the catalog is built ({mo})", False)
            continue
        with open(mo, "rb") as f:
            t = gettext.GNUTranslations(f)
        msgid = "Inpainted (%s, seed %d, %d steps)"
        check(f"{lang}: the built catalog translates the layer name",
              t.gettext(msgid) == po.get(msgid) and t.gettext(msgid) != msgid, t.gettext(msgid))
    print(f"1..{len(results)}")
    for i, (name, ok, detail) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} {name}" + ("" if ok or not detail else f" # {detail}"))
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
