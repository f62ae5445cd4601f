"""`python -m pagefit.dask PATH... --output OUT.jsonl`: `pagefit check` of
every package under directory trees, or of a list of paths, on a Dask
cluster, one task per package.

The output holds exactly the records of `pagefit check --format jsonl` on
the same paths, in the same order (reports in input order, then errors): the
client expands the paths as the CLI does, writes results in input order, and
drops a file reached twice, by its identity, as the CLI does.

Memory: each worker checks one package at a time (one thread) with the CLI's
reader, which holds one archive member at a time, and Dask's memory limit
stops a worker that exceeds --memory-limit. The client keeps at most
--window results in flight or waiting to be written.
"""

import argparse
import json
import os
import sys

from . import DEFAULT_PAGE_SIZES, _check_package, _native


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m pagefit.dask", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="packages, files or directory trees (walked as `pagefit check` walks them)")
    parser.add_argument("--output", "-o", required=True, metavar="OUT", help="OUT.jsonl (JSON lines) or OUT.parquet")
    parser.add_argument("--format", choices=["jsonl", "parquet"], help="default: from OUT's extension, else jsonl")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="LocalCluster workers (default: one per CPU)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="an existing cluster's scheduler; its workers must see PATH")
    parser.add_argument("--memory-limit", default="2GiB", help="per LocalCluster worker (default 2GiB)")
    parser.add_argument("--page-size", default=DEFAULT_PAGE_SIZES, help="as `pagefit check --page-size`")
    parser.add_argument("--loader", help="as `pagefit check --loader`")
    parser.add_argument("--no-runtime", action="store_true", help="as `pagefit check --no-runtime`")
    parser.add_argument("--window", type=int, help="tasks in flight or waiting to be written (default: 8 per worker thread)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.format is None:
        args.format = "parquet" if args.output.endswith(".parquet") else "jsonl"
    return args


class JsonLinesOutput:
    """Records as `pagefit check --format jsonl` prints them."""

    def __init__(self, path):
        self.file = open(path, "w", encoding="utf-8")

    def write(self, lines):
        for line in lines:
            self.file.write(line + "\n")

    def close(self):
        self.file.close()


class ParquetOutput:
    """One row per record: `path`, `error` (the message, or null for a
    report) and `record` (the record's JSON text)."""

    def __init__(self, path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema([("path", pa.string()), ("error", pa.string()), ("record", pa.string())])
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, lines):
        rows = {"path": [], "error": [], "record": []}
        for line in lines:
            record = json.loads(line)
            error = record.get("error")
            rows["path"].append(error["path"] if error else record["path"])
            rows["error"].append(error["message"] if error else None)
            rows["record"].append(line)
        if lines:
            self.writer.write_table(self.pa.table(rows, schema=self.schema))

    def close(self):
        self.writer.close()


def is_error(line):
    # Error records are the only ones whose first key is "error" (docs/json.md).
    return line.startswith('{"error":')


def audit(client, paths, options, output, window, progress):
    """Checks every input of `paths` on `client`'s cluster; writes records to `output`."""
    from dask.distributed import as_completed

    candidates, errors = _native.expand(paths)
    progress.reset(total=len(candidates))
    finished = {}
    seen = set()
    next_written = 0
    submitted = 0
    index_of = {}
    in_flight = as_completed()

    def submit_more():
        nonlocal submitted
        while submitted < len(candidates) and submitted - next_written < window:
            path, named = candidates[submitted]
            future = client.submit(_check_package, path, named, options, pure=False)
            index_of[future] = submitted
            in_flight.add(future)
            submitted += 1

    submit_more()
    for future in in_flight:
        finished[index_of.pop(future)] = future.result()
        future.release()
        progress.update(1)
        while next_written in finished:
            identity, lines = finished.pop(next_written)
            next_written += 1
            if identity is not None:
                identity = tuple(identity)
                if identity in seen:
                    continue
                seen.add(identity)
            output.write([line for line in lines if not is_error(line)])
            errors.extend(line for line in lines if is_error(line))
        submit_more()
    output.write(errors)
    return len(candidates), len(errors)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from dask.distributed import Client, LocalCluster
    from tqdm import tqdm

    options = {"page_sizes": args.page_size, "loaders": args.loader, "runtime": not args.no_runtime}
    if args.scheduler:
        client = Client(args.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit, dashboard_address=None
        )
        client = Client(cluster)
    threads = sum(client.nthreads().values()) or 1
    output = ParquetOutput(args.output) if args.format == "parquet" else JsonLinesOutput(args.output)
    try:
        with tqdm(unit="package", file=sys.stderr, disable=None) as progress:
            packages, errors = audit(client, args.paths, options, output, args.window or 8 * threads, progress)
    finally:
        output.close()
        client.close()
        if cluster is not None:
            cluster.close()
    print(f"pagefit.dask: {packages} inputs, {errors} errors, {threads} workers -> {args.output}", file=sys.stderr)
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
