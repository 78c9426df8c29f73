"""The engine's global symbols: every function or variable core/ defines that the plug-in
executable or `ldm` has as a global of default visibility (what nm -g --defined-only lists,
less what the linker keeps global but hidden, which cannot be exported) must be part of the
public API, named ldm_*. The plug-in links GEGL, GTK and GIMP beside core/, so an unprefixed
global (rng_seed, conv_load, ...) could collide with theirs.

Usage: test_symbols.py NM READELF CORE_ARCHIVE... -- EXECUTABLE...
What core/ defines is read from its static libraries (nm lists their hidden symbols too)."""
import subprocess
import sys


def defined_globals(nm, path):
    """The names of the global symbols `path` defines (nm -g --defined-only)."""
    out = subprocess.run([nm, "-g", "--defined-only", path], check=True,
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        # "ADDRESS TYPE NAME"; archive member headers ("x.o:") and blanks have fewer fields
        if len(fields) == 3:
            names.add(fields[2])
    return names


def hidden_symbols(readelf, path):
    """The names `path` has with hidden or internal visibility (readelf -sW)."""
    out = subprocess.run([readelf, "-sW", path], check=True, capture_output=True,
                         text=True).stdout
    names = set()
    for line in out.splitlines():
        # "Num: Value Size Type Bind Vis Ndx Name"
        fields = line.split()
        if len(fields) >= 8 and fields[0].endswith(":") and fields[5] in ("HIDDEN", "INTERNAL"):
            names.add(fields[7])
    return names


def main():
    args = sys.argv[1:]
    if "--" not in args or len(args) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    nm, readelf, rest = args[0], args[1], args[2:]
    split = rest.index("--")
    archives, executables = rest[:split], rest[split + 1:]
    core = set()
    for archive in archives:
        core |= defined_globals(nm, archive)
    print(f"1..{len(executables)}")
    failed = 0
    for i, exe in enumerate(executables, 1):
        exported = (defined_globals(nm, exe) - hidden_symbols(readelf, exe)) & core
        bad = sorted(name for name in exported if not name.startswith("ldm_"))
        public = len(exported) - len(bad)
        if bad:
            failed += 1
            print(f"not ok {i} - {exe}: {len(bad)} global symbols of core/ without the ldm_ "
                  f"prefix ({public} ldm_* ones)")
            for name in bad:
                print(f"# {name}")
        else:
            print(f"ok {i} - {exe}: the {public} global symbols of core/ all start with ldm_")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
