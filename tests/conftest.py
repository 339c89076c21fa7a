import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("COOKBOOK_PROFILE", "smoke")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smoke_data():
    """The smoke-size API-docs dataset (built once, then read from the cache)."""
    from cookbook.corpus import load_apidocs

    return load_apidocs("smoke")


@pytest.fixture(scope="session")
def binary_data():
    """The binary BEIR fixture: plain folder, grade-1 labels, a test split only, its own edges.jsonl."""
    from cookbook.beir import load_beir
    from cookbook.config import DATA_DIR

    return load_beir(DATA_DIR / "fixtures" / "binary_beir")


@pytest.fixture(scope="session")
def tiny_model():
    from cookbook.models import tiny_embedder

    return tiny_embedder()


@pytest.fixture
def json_server():
    """Start local HTTP servers whose POST replies come from ``reply(path, body) -> (status, json)``.

    Returns ``start(reply) -> base_url`` (``http://127.0.0.1:<port>/v1``); every server is shut
    down after the test. ``reply`` may return bytes instead of a JSON-able object.
    """
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers = []

    def start(reply):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, answer = reply(self, json.loads(body))
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()
