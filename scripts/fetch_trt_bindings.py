#!/usr/bin/env python3
"""Fetch the real TensorRT Python bindings from PyPI and make them importable without a GPU.

For each supported TensorRT version: `pip download --no-deps` the bindings wheel for this Python
and platform, unpack it into .cache/trt-bindings/<version>/, and compile stub libraries
(libnvinfer, libnvonnxparser, ... with the symbols `nm -D --undefined-only` lists, each
returning 0) into .cache/trt-bindings/<version>/stubs/. With that folder on LD_LIBRARY_PATH,
`import tensorrt_bindings` gives the real classes, methods, enums and signatures: enough to check
the project's TensorRT calls (tests/engine/test_trt_conformance.py), never to build or run.

Idempotent: a version already unpacked with its stubs is skipped. Exit status 0 even when a
download fails (no network): the file .cache/trt-bindings/<version>/FAILED then says why and the
conformance tests skip with that text.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# (version, PyPI project) -- the versions docs/platforms.md claims
WHEELS = [
    ("8.6.1", "tensorrt-bindings"),
    ("10.3.0", "tensorrt-cu12-bindings"),
    ("10.13.3.9", "tensorrt-cu12-bindings"),
    ("10.16.1.11", "tensorrt-cu12-bindings"),
    ("11.4.0.106", "tensorrt-cu13-bindings"),
]
ROOT = Path(__file__).resolve().parent.parent / ".cache" / "trt-bindings"
# symbols the bindings import from the NVIDIA libraries: unversioned (libc/libstdc++ symbols carry
# @GLIBC/@CXXABI), strong, not Python's C API nor the dynamic loader's
_OTHER_LIBRARY = re.compile(r"^(_?Py|dl(open|close|sym|error)$)")


def fetch(version: str, project: str, python: str) -> str:
    target = ROOT / version
    if (target / "stubs" / "READY").exists():
        return "cached"
    if target.exists():
        shutil.rmtree(str(target))
    target.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as download:
        result = subprocess.run(
            [python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", download,
             "{}=={}".format(project, version)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        wheels = list(Path(download).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            reason = "pip download {}=={} failed: {}".format(project, version, result.stdout.strip()[-500:])
            (target / "FAILED").write_text(reason + "\n")
            return reason
        with zipfile.ZipFile(str(wheels[0])) as archive:
            archive.extractall(str(target))
    module = next(target.glob("tensorrt_bindings/tensorrt*.so"))
    build_stubs(module, target / "stubs")
    return "fetched"


def build_stubs(module: Path, stubs: Path) -> None:
    stubs.mkdir(exist_ok=True)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(libnv[^\]]+)\]",
                        subprocess.check_output(["readelf", "-d", str(module)], universal_newlines=True))
    symbols = sorted({fields[1] for fields in (line.split() for line in subprocess.check_output(
        ["nm", "-D", "--undefined-only", str(module)], universal_newlines=True).splitlines())
        if len(fields) == 2 and fields[0] == "U" and "@" not in fields[1] and not _OTHER_LIBRARY.match(fields[1])})
    source = stubs / "stub.c"
    source.write_text("".join("void *{}(void) {{ return 0; }}\n".format(name) for name in symbols))
    for library in needed:
        subprocess.check_call(["gcc", "-shared", "-fPIC", "-o", str(stubs / library), str(source),
                               "-Wl,-soname," + library])
    (stubs / "READY").write_text("\n".join(symbols) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="pip of this Python picks the wheel tags")
    args = parser.parse_args()
    if shutil.which("gcc") is None or shutil.which("nm") is None:
        for version, _ in WHEELS:
            (ROOT / version).mkdir(parents=True, exist_ok=True)
            (ROOT / version / "FAILED").write_text("gcc and binutils (nm, readelf) are needed to stub the "
                                                   "NVIDIA libraries; apt-get install gcc binutils\n")
        print("TensorRT bindings: gcc/nm missing, conformance tests will skip")
        return 0
    for version, project in WHEELS:
        print("TensorRT {} bindings: {}".format(version, fetch(version, project, args.python)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
