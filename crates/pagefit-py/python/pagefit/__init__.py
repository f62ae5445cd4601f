"""pagefit: check, explain, fix and run ELF binaries at any memory page size.

`check` and `fix` run pagefit's Rust code in this process and return the
records of its JSON contract (docs/json.md) as dicts. `main` is the
`pagefit` command line. `python -m pagefit.dask` audits many packages on a
Dask cluster.
"""

import json
import os
import sys

from . import _native
from ._native import PagefitError

__all__ = ["check", "fix", "main", "PagefitError"]

DEFAULT_PAGE_SIZES = "16k,64k"


def _comma_list(value):
    """'16k,64k', ['16k', 65536] or 16384 as the CLI's comma-separated text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return ",".join(str(item) for item in value)


def _error(record):
    error = record["error"]
    exception = PagefitError(f"{error['path']}: {error['message']}")
    exception.path, exception.message = error["path"], error["message"]
    return exception


def check(path_or_bytes, page_sizes=DEFAULT_PAGE_SIZES, loaders=None, *, runtime=True, errors="raise", name="<bytes>"):
    """The records `pagefit check --format jsonl` prints for a file, a
    directory tree or an archive (or an ELF file given as bytes, reported as
    `name`): a list of reports, then `{"error": ...}` records.

    With errors="raise" (the default) the first input that could not be
    analysed raises PagefitError, whose message names the file and the
    offset; with errors="record" the error records are returned too.
    """
    if errors not in ("raise", "record"):
        raise ValueError(f"errors must be 'raise' or 'record', not {errors!r}")
    page_sizes, loaders = _comma_list(page_sizes), _comma_list(loaders)
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        lines = [_native.check_bytes(bytes(path_or_bytes), name, page_sizes, loaders, runtime)]
    else:
        lines = _native.check_paths([os.fsdecode(path_or_bytes)], page_sizes, loaders, runtime)
    records = [json.loads(line) for line in lines]
    if errors == "raise":
        for record in records:
            if "error" in record:
                raise _error(record)
    return records


def fix(input, output, page_size, *, strategy="auto", no_wx=False):
    """`pagefit fix --page-size P INPUT -o OUTPUT` for one ELF file: the fix
    report (docs/json.md) as a dict. Its `status` says whether the file was
    fixed, already ok, or refused; an unreadable input raises PagefitError."""
    report = _native.fix(os.fspath(input), os.fspath(output), _comma_list(page_size), strategy, no_wx)
    return json.loads(report)


def main(argv=None):
    """The `pagefit` command line, run in this process; exits with its status."""
    argv = sys.argv if argv is None else ["pagefit", *argv]
    sys.exit(_native.run_cli([os.fsdecode(word) for word in argv]))


def _check_package(path, named, options):
    """A Dask task: one input of `check`, as (file identity, JSON lines)."""
    return _native.check_input(path, named, options["page_sizes"], options["loaders"], options["runtime"])
