"""A real ComfyUI started headless on the CPU for the integration tier, and a small client for it.

Standard library only: HTTP through urllib and the progress stream through a minimal WebSocket reader,
so the tier needs nothing beyond the project's own test environment.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

HOST = "127.0.0.1"


def find_comfyui() -> tuple[Path, Path] | str:
    """(ComfyUI folder, its python), or the reason the tier cannot run."""
    root = Path(os.environ.get("COMFYUI_PATH", Path.home() / "comfy" / "ComfyUI")).expanduser()
    python = Path(os.environ.get("COMFYUI_PYTHON", Path.home() / "comfy" / "venv" / "bin" / "python")).expanduser()
    if not (root / "main.py").is_file():
        return f"no ComfyUI checkout at {root} (set COMFYUI_PATH to a folder holding main.py)"
    if not os.access(python, os.X_OK):
        return f"no ComfyUI python at {python} (set COMFYUI_PYTHON to the interpreter ComfyUI runs with)"
    return root, python


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ComfyServer:
    """One `main.py --cpu` subprocess on a free local port with its own base directory."""

    def __init__(self, root: Path, python: Path, base: Path):
        self.root, self.python, self.base = root, python, base
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = base / "server.log"
        self.process: subprocess.Popen | None = None
        self.client_id = uuid.uuid4().hex

    # -- lifecycle
    def start(self, timeout: float = 300.0) -> None:
        command = [str(self.python), "main.py", "--cpu", "--listen", HOST, "--port", str(self.port),
                   "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "DO_NOT_TRACK": "1"}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                status, _ = self.get("/object_info/SaveVideo")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"ComfyUI did not answer /object_info within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def rss_bytes(self) -> int:
        """Resident memory of the server process (VmRSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")

    # -- HTTP
    def _request(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def get(self, path: str) -> tuple[int, object]:
        return self._request("GET", path)

    def get_bytes(self, path: str) -> tuple[int, bytes]:
        """GET a file as served (an image), without decoding it."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def post(self, path: str, body: object | None = None) -> tuple[int, object]:
        return self._request("POST", path, body if body is not None else {})

    # -- prompts
    def submit(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt; (status, reply): 200 with prompt_id, or 400 with the validation errors."""
        return self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def run(self, prompt: dict, timeout: float = 300.0) -> dict:
        status, reply = self.submit(prompt)
        assert status == 200, f"/prompt refused the workflow: {json.dumps(reply, indent=1)[:3000]}"
        return self.wait(reply["prompt_id"], timeout)

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """The /history entry of a finished prompt."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, history = self.get(f"/history/{prompt_id}")
            if status == 200 and history and prompt_id in history:
                entry = history[prompt_id]
                if entry.get("status", {}).get("completed") is not None:
                    return entry
            if self.process.poll() is not None:
                raise AssertionError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.25)
        raise AssertionError(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log_tail()}")


def status_message(entry: dict, event: str) -> dict | None:
    """The data of one status event ("execution_error", "execution_interrupted", ...) of a /history entry."""
    for name, data in entry.get("status", {}).get("messages", []):
        if name == event:
            return data
    return None


def saved_files(entry: dict, base: Path) -> list[Path]:
    """Files the prompt's output nodes wrote (Save Video reports them under "images")."""
    found = []
    for output in entry.get("outputs", {}).values():
        for item in output.get("images", []):
            folder = base / item.get("type", "output") / item.get("subfolder", "")
            found.append(folder / item["filename"])
    return found


class EventStream:
    """The server's WebSocket events for our client id, collected on a thread (minimal RFC 6455 reader)."""

    def __init__(self, server: ComfyServer):
        self.events: list[tuple[float, str, dict]] = []
        self._sock = socket.create_connection((HOST, server.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall((f"GET /ws?clientId={server.client_id} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._sock.recv(1)
            if not chunk:
                raise ConnectionError("WebSocket handshake closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"WebSocket handshake refused: {head[:200]!r}")
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _read(self) -> None:
        try:
            while True:
                first, second = self._exact(2)
                opcode, length = first & 0x0F, second & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._exact(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._exact(8))[0]
                payload = self._exact(length)  # server frames are never masked
                if opcode == 8:
                    return
                if opcode == 1:
                    message = json.loads(payload)
                    self.events.append((time.monotonic(), message.get("type", ""), message.get("data", {})))
        except (ConnectionError, OSError, ValueError):
            return

    def of(self, kind: str, prompt_id: str) -> list[tuple[float, dict]]:
        return [(t, d) for t, k, d in list(self.events) if k == kind and d.get("prompt_id") == prompt_id]

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
