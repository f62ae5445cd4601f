"""The installed `pagefit` package, against the `pagefit` console entry
point of the same wheel. PAGEFIT_FIXTURES is the fixture corpus
(fixtures/build.sh) and PAGEFIT_REALWORLD the downloads of
`cargo xtask realworld`; `test.sh` sets both and fails when one is missing."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import pagefit

FIXTURES = os.environ["PAGEFIT_FIXTURES"]
REALWORLD = os.environ["PAGEFIT_REALWORLD"]
PAGEFIT = shutil.which("pagefit")
# Broken at 16K on the kernel (README): its RW segment is not congruent.
BROKEN_AT_16K = os.path.join(FIXTURES, "aarch64", "c-pie-bfd-4k")


def cli(*args):
    return subprocess.run([PAGEFIT, *args], capture_output=True, text=True)


class ConsoleEntryPoint(unittest.TestCase):
    def test_is_the_wheels_and_runs_the_cli(self):
        self.assertTrue(PAGEFIT.startswith(sys.prefix), PAGEFIT)
        self.assertEqual(cli("--version").stdout.split()[0], "pagefit")
        self.assertEqual(cli("check", "--page-size", "16k", BROKEN_AT_16K).returncode, 1)
        self.assertEqual(cli("check", "--shard", "2/2", FIXTURES).returncode, 2)


class Check(unittest.TestCase):
    def test_records_are_the_json_lines_of_the_cli(self):
        lines = cli("check", "--format", "jsonl", FIXTURES).stdout.splitlines()
        self.assertGreater(len(lines), 100)
        self.assertEqual(pagefit.check(FIXTURES, errors="record"), [json.loads(line) for line in lines])

    def test_page_sizes_and_loaders(self):
        [report] = pagefit.check(BROKEN_AT_16K, page_sizes=["4k", 16384], loaders="glibc")
        self.assertEqual([(r["page_size"], r["loader"]) for r in report["results"]], [(4096, "glibc"), (16384, "glibc")])
        [report] = pagefit.check(BROKEN_AT_16K, page_sizes="16k")
        self.assertEqual(report["results"][0]["outcome"], "rejected")

    def test_bytes_are_checked_as_the_file(self):
        with open(BROKEN_AT_16K, "rb") as file:
            [from_bytes] = pagefit.check(file.read(), name=BROKEN_AT_16K)
        self.assertEqual([from_bytes], pagefit.check(BROKEN_AT_16K))

    def test_errors_name_the_file_and_the_offset(self):
        with tempfile.TemporaryDirectory() as tmp:
            truncated = os.path.join(tmp, "truncated.so")
            with open(BROKEN_AT_16K, "rb") as source, open(truncated, "wb") as out:
                out.write(source.read(100))
            with self.assertRaises(pagefit.PagefitError) as raised:
                pagefit.check(truncated)
            self.assertIsInstance(raised.exception, ValueError)
            self.assertIn(truncated, str(raised.exception))
            self.assertIn("offset 0x", str(raised.exception))
            self.assertEqual(raised.exception.path, truncated)
            [record] = pagefit.check(truncated, errors="record")
            self.assertEqual(record["error"]["path"], truncated)
        with self.assertRaises(ValueError):
            pagefit.check(BROKEN_AT_16K, page_sizes="15k")


class Fix(unittest.TestCase):
    def test_fixes_and_the_output_checks_ok(self):
        with tempfile.TemporaryDirectory() as tmp:
            output = os.path.join(tmp, "fixed")
            report = pagefit.fix(BROKEN_AT_16K, output, "16k")
            self.assertEqual((report["status"], report["output"]), ("fixed", output))
            [checked] = pagefit.check(output, page_sizes="16k")
            self.assertEqual({r["outcome"] for r in checked["results"]}, {"ok"})
            with self.assertRaises(pagefit.PagefitError) as raised:
                pagefit.fix(os.path.join(tmp, "missing"), output, "16k")
            self.assertIn("missing", str(raised.exception))


class Dask(unittest.TestCase):
    """A LocalCluster of 2 workers over the fixtures and the real-world set
    gives exactly the output of one `pagefit check --format jsonl` run."""

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        # An input that cannot be analysed: its error record comes last.
        self.truncated = os.path.join(self.tmp, "truncated.so")
        with open(BROKEN_AT_16K, "rb") as source, open(self.truncated, "wb") as out:
            out.write(source.read(100))
        self.paths = [FIXTURES, REALWORLD, self.truncated]

    def audit(self, output):
        command = [sys.executable, "-m", "pagefit.dask", *self.paths, "--workers", "2", "--output", output]
        return subprocess.run(command, capture_output=True, text=True)

    def test_two_workers_give_the_records_of_one_cli_run(self):
        expected = cli("check", "--format", "jsonl", *self.paths).stdout
        self.assertIn("!/", expected, "the real-world archives are read")
        self.assertTrue(expected.splitlines()[-1].startswith('{"error":'), expected.splitlines()[-1])
        output = os.path.join(self.tmp, "audit.jsonl")
        audit = self.audit(output)
        self.assertEqual(audit.returncode, 2, audit.stderr)
        with open(output, encoding="utf-8") as file:
            self.assertEqual(file.read(), expected)

    def test_an_existing_cluster_through_scheduler(self):
        from dask.distributed import LocalCluster

        expected = cli("check", "--format", "jsonl", FIXTURES).stdout
        output = os.path.join(self.tmp, "audit.jsonl")
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
            command = [sys.executable, "-m", "pagefit.dask", FIXTURES, "--scheduler", cluster.scheduler_address, "--output", output]
            audit = subprocess.run(command, capture_output=True, text=True)
        self.assertEqual(audit.returncode, 0, audit.stderr)
        with open(output, encoding="utf-8") as file:
            self.assertEqual(file.read(), expected)

    def test_parquet_holds_the_same_records(self):
        import pyarrow.parquet as pq

        expected = [json.loads(line) for line in cli("check", "--format", "jsonl", *self.paths).stdout.splitlines()]
        output = os.path.join(self.tmp, "audit.parquet")
        audit = self.audit(output)
        self.assertEqual(audit.returncode, 2, audit.stderr)
        table = pq.read_table(output).to_pydict()
        self.assertEqual([json.loads(record) for record in table["record"]], expected)
        self.assertEqual(table["path"], [r["error"]["path"] if "error" in r else r["path"] for r in expected])
        self.assertEqual(table["error"][-1], expected[-1]["error"]["message"])


if __name__ == "__main__":
    unittest.main()
