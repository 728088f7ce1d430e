#!/usr/bin/python3
"""AOSP bspatch's command line on top of Debian's bspatch, for AOSP's paycheck.py.

paycheck.py applies SOURCE_BSDIFF and BROTLI_BSDIFF operations by running
    bspatch OLD NEW PATCH OLD_EXTENTS NEW_EXTENTS
with AOSP's bspatch (external/bsdiff): extents are "offset:length,..." byte ranges of OLD and NEW,
and the patch may be BSDF2 (brotli or bzip2 streams) as well as BSDIFF40. Debian's bspatch (Colin
Percival's 4.3) takes whole files and BSDIFF40 only. This script gathers the old extents into a
file, re-wraps a BSDF2 patch as BSDIFF40 (the same control, diff and extra streams, recompressed
with bzip2), lets Debian's bspatch do the patching, and writes the result over the new extents.
The patch arithmetic stays the real tool's; this only moves bytes and containers.
"""
import bz2
import os
import subprocess
import sys
import tempfile

import brotli


def offtin(b):
    v = int.from_bytes(b[:7], 'little') | ((b[7] & 0x7F) << 56)
    return -v if b[7] & 0x80 else v


def offtout(v):
    b = bytearray(abs(v).to_bytes(8, 'little'))
    if v < 0:
        b[7] |= 0x80
    return bytes(b)


def as_bsdiff40(patch):
    if patch[:8] == b'BSDIFF40':
        return patch
    if patch[:5] != b'BSDF2':
        sys.exit('bspatch-extents: not a bsdiff patch')
    ctrl_len, diff_len, new_size = offtin(patch[8:16]), offtin(patch[16:24]), offtin(patch[24:32])
    raw = [patch[32:32 + ctrl_len], patch[32 + ctrl_len:32 + ctrl_len + diff_len], patch[32 + ctrl_len + diff_len:]]
    streams = []
    for kind, data in zip(patch[5:8], raw):
        if kind == 1:
            streams.append(bz2.decompress(data))
        elif kind == 2:
            streams.append(brotli.decompress(data))
        else:
            sys.exit('bspatch-extents: unknown stream compressor %d' % kind)
    ctrl, diff, extra = (bz2.compress(s, 9) for s in streams)
    return b'BSDIFF40' + offtout(len(ctrl)) + offtout(len(diff)) + offtout(new_size) + ctrl + diff + extra


def extents(arg):
    out = []
    for item in arg.split(','):
        off, length = item.split(':')
        out.append((int(off), int(length)))
    return out


def main():
    old_path, new_path, patch_path, old_ext, new_ext = sys.argv[1:6]
    with open(old_path, 'rb') as f:
        old = b''
        for off, length in extents(old_ext):
            f.seek(off)
            old += f.read(length)
    with open(patch_path, 'rb') as f:
        patch = as_bsdiff40(f.read())
    with tempfile.TemporaryDirectory() as d:
        paths = [os.path.join(d, n) for n in ('old', 'new', 'patch')]
        with open(paths[0], 'wb') as f:
            f.write(old)
        with open(paths[2], 'wb') as f:
            f.write(patch)
        subprocess.check_call(['/usr/bin/bspatch', paths[0], paths[1], paths[2]])
        with open(paths[1], 'rb') as f:
            new = f.read()
    with open(new_path, 'r+b') as f:
        at = 0
        for off, length in extents(new_ext):
            f.seek(off)
            f.write(new[at:at + length])
            at += length
    if at != len(new):
        sys.exit('bspatch-extents: %d bytes patched, %d bytes of new extents' % (len(new), at))


if __name__ == '__main__':
    main()
