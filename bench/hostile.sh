#!/usr/bin/env bash
# Benchmark: `pagefit check` on hostile inputs, with the exit status, the
# first line it prints, its peak RSS and wall time (GNU time), one run each:
#   - a zip bomb: an ELF-looking member of 4 GiB of zeros, deflated to 4 MB;
#   - a zip whose member named .zip inflates to 1 GiB;
#   - ten levels of nested zips (42.zip-style), past the nesting limit;
#   - the zip bomb and the nested zip bomb inside a tarball (nested-bomb.tgz);
#   - the ten levels of zips inside a tarball (deep.tgz);
#   - a tar whose header claims a 1 TiB member;
#   - a directory that contains a symlink to itself;
#   - an ELF file with 65,535 program headers (PT_LOAD, all the same; PN_XNUM);
#   - an ELF file with 65,535 sections in one segment.
#   - then any archive given as an argument (an npm tarball holding AARs, say).
# Usage: bench/hostile.sh [ARCHIVE...]. Needs python3 and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
pagefit=${CARGO_TARGET_DIR:-$PWD/target}/release/pagefit
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work" <<'PY'
import io, os, struct, sys, tarfile, zipfile
work = sys.argv[1]
elf_head = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 3, 183, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
# A zip bomb: 4 GiB that starts like an ELF file, streamed in.
with zipfile.ZipFile(os.path.join(work, "bomb.zip"), "w", zipfile.ZIP_DEFLATED) as z:
    with z.open("lib/arm64-v8a/libbomb.so", "w", force_zip64=True) as m:
        m.write(elf_head)
        chunk = bytes(1 << 20)
        for _ in range(4096):
            m.write(chunk)
# A nested zip bomb: a member named .zip that inflates to 1 GiB.
with zipfile.ZipFile(os.path.join(work, "nested-bomb.zip"), "w", zipfile.ZIP_DEFLATED) as z:
    with z.open("assets/inner.zip", "w", force_zip64=True) as m:
        m.write(b"PK\x03\x04")
        chunk = bytes(1 << 20)
        for _ in range(1024):
            m.write(chunk)
# Nested: ten levels of zips, each holding the previous.
inner = open(os.path.join(work, "bomb.zip"), "rb").read()
for level in range(10):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"level{level}.zip", inner)
    inner = buffer.getvalue()
open(os.path.join(work, "nested.zip"), "wb").write(inner)
# The same inside tarballs, as npm packs them.
def tgz(name, members):
    with tarfile.open(os.path.join(work, name), "w:gz") as t:
        for member in members:
            t.add(os.path.join(work, member), arcname="package/" + member)
tgz("nested-bomb.tgz", ["bomb.zip", "nested-bomb.zip"])
tgz("deep.tgz", ["nested.zip"])
# A tar header that claims 1 TiB.
header = tarfile.TarInfo("usr/lib/libhuge.so")
header.size = 1 << 40
raw = header.tobuf(format=tarfile.GNU_FORMAT) + elf_head + bytes(512 - len(elf_head))
open(os.path.join(work, "huge.tar"), "wb").write(raw)
# 65,535 PT_LOADs: e_phnum is PN_XNUM and section 0's sh_info holds the count.
count = 65535
shoff = 64 + 56 * count
header = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 3, 183, 1, 0, 64, shoff, 0, 64, 56, 0xFFFF, 64, 1, 0)
load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, 0x1000, 0x1000, 0x1000)
section0 = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, count, 0, 0)
open(os.path.join(work, "phdrs.so"), "wb").write(header + load * count + section0 + bytes(0x1000))
# 65,535 sections of 16 bytes each, all allocated, inside one PT_LOAD.
header = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 3, 183, 1, 0, 64, 0x1000, 0, 64, 56, 1, 64, count, 1)
load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, 0x200000, 0x200000, 0x1000)
null, names = struct.pack("<IIQQQQIIQQ", *[0] * 10), struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0, 0x900, 1, 0, 0, 1, 0)
sections = b"".join(struct.pack("<IIQQQQIIQQ", 0, 1, 6, 0x100000 + i * 16, 0x100000 + i * 16, 16, 0, 0, 1, 0) for i in range(2, count))
image = header + load + bytes(0x1000 - 64 - 56) + null + names + sections
open(os.path.join(work, "sections.so"), "wb").write(image.ljust(0x200000, b"\0"))
os.makedirs(os.path.join(work, "loop"))
os.symlink(".", os.path.join(work, "loop", "self"))
os.symlink(os.path.join(work, "phdrs.so"), os.path.join(work, "loop", "phdrs.so"))
PY

printf '%-28s %5s %10s %7s  %s\n' input exit "peak RSS" seconds "first line"
inputs=("$work"/{bomb.zip,nested-bomb.zip,nested.zip,nested-bomb.tgz,deep.tgz,huge.tar,phdrs.so,sections.so,loop})
for archive in "$@"; do inputs+=("$(realpath "$archive")"); done
for path in "${inputs[@]}"; do
  input=$(basename "$path")
  /usr/bin/time -f '%M %e' -o "$work/rss" "$pagefit" check --page-size 16k "$path" >"$work/out" 2>&1 && status=0 || status=$?
  read -r rss seconds < <(tail -1 "$work/rss")
  # The error, if any, else the first line.
  line=$( (grep -m1 '^pagefit: ' "$work/out" || head -1 "$work/out") | sed "s#$work/##g; s#$(dirname "$path")/##g" | cut -c1-150)
  printf '%-28s %5s %7s KB %7s  %s\n' "$input" "$status" "$rss" "$seconds" "$line"
done
