"""A real HTTP server on loopback that serves model files with Range support, and can cut the first
transfer of a file after N bytes (the connection closes mid-body, as a flaky network does)."""

import http.server
import threading
from pathlib import Path
from typing import Dict, List, Optional


class ModelServer:
    def __init__(self, folder: Path, honour_range: bool = True) -> None:
        self.folder = folder
        self.honour_range = honour_range
        self.cut_after: Dict[str, int] = {}  # file name -> bytes sent before the first transfer is cut
        self.requests: List[Dict[str, Optional[str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                ranged = self.headers.get("Range")
                server.requests.append({"path": name, "range": ranged})
                path = server.folder / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                if ranged and server.honour_range:
                    start = int(ranged.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", "bytes {}-{}/{}".format(start, len(data) - 1, len(data)))
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes" if server.honour_range else "none")
                self.end_headers()
                cut = server.cut_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="model-server", daemon=True)

    def url(self, name: str) -> str:
        return "http://127.0.0.1:{}/{}".format(self.port, name)

    def __enter__(self) -> "ModelServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
