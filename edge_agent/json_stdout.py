"""`--json` output: exactly one JSON document on stdout, whatever the libraries print meanwhile.

ONNX Runtime's quantizer prints from Python, TensorRT and other native libraries write to file
descriptor 1 from C++. While a `--json` command runs, `reserved_stdout()` points descriptor 1 and
`sys.stdout` at stderr (the log), keeping a private copy of the real stdout on which
`print_document` writes the one document.
"""

import contextlib
import io
import json
import os
import sys
from typing import Any, Iterator, Optional, TextIO

_document_stream: Optional[TextIO] = None


@contextlib.contextmanager
def reserved_stdout() -> Iterator[None]:
    global _document_stream
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # stdout replaced in-process (tests)
        fd = None
    previous = sys.stdout
    saved = os.dup(fd) if fd is not None else None
    if fd is not None:
        os.dup2(sys.stderr.fileno(), fd)
    _document_stream = os.fdopen(saved, "w", encoding="utf-8") if saved is not None else previous
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        _document_stream.flush()
        if fd is not None and saved is not None:
            os.dup2(saved, fd)
            _document_stream.close()
        sys.stdout = previous
        _document_stream = None


def print_document(document: Any) -> None:
    """Write `document` as one line of JSON on the real stdout (reserved or not)."""
    stream = _document_stream or sys.stdout
    stream.write(json.dumps(document) + "\n")
    stream.flush()
