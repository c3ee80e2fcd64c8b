"""A loopback HTTP server for download tests: serves, 404s, truncates or sends HTML on demand."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

from compress.models.zoo.pretrained import PRETRAINED, Pretrained


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "application/octet-stream"
    truncate_at: int | None = None  # announce len(body), send only this many bytes


@dataclass
class Server:
    base: str
    routes: dict[str, Route]
    hits: list[str] = field(default_factory=list)


@contextmanager
def serve(routes: dict[str, Route]) -> Iterator[Server]:
    """Serve `routes` (path -> Route) on 127.0.0.1 in a thread for the `with` block."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            route = routes.get(self.path)
            if route is None:
                route = Route(b"<html>not found</html>", 404, "text/html")
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body[: route.truncate_at])
            self.wfile.flush()
            if route.truncate_at is not None:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", routes, hits)
    finally:
        httpd.shutdown()
        httpd.server_close()


def checkpoint_bytes(model: torch.nn.Module, path: Path, drop_bn_counters: bool = True) -> bytes:
    """A torchvision-style checkpoint of `model` (plain state_dict, old BN keys by default)."""
    sd = {
        k: v
        for k, v in model.state_dict().items()
        if not (drop_bn_counters and k.endswith("num_batches_tracked"))
    }
    torch.save(sd, path)
    return path.read_bytes()


def publish(monkeypatch, model: str, body: bytes) -> Pretrained:
    """Replace `model`'s `imagenet` entry by one whose file name carries `body`'s hash prefix."""
    real = PRETRAINED[(model, "imagenet")]
    prefix = hashlib.sha256(body).hexdigest()[:8]
    fake = Pretrained(
        model, "imagenet", real.alias, f"{model}-{prefix}.pth", real.num_params, real.acc1,
        real.acc5, real.gflops, real.file_mb, real.min_size,
    )  # fmt: skip
    monkeypatch.setitem(PRETRAINED, (model, "imagenet"), fake)
    return fake
