"""Run ComfyUI headless and drive it over its HTTP API (loopback only).

Used by the demo script and the end-to-end tests: starts ``main.py`` as a subprocess with
this pack as its only custom node folder, queues API-format workflows on ``/prompt`` and
reads results from ``/history``, as the frontend would. Needs no ComfyUI import.
"""
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

PACK_FOLDER_NAME = "ShapeFirst"
HOST_HINT = ("set COMFYUI_PATH=/path/to/ComfyUI (or install this pack under ComfyUI/custom_nodes/, "
             "or make `comfy` importable)")


def find_comfyui(pack_dir, environ=os.environ):
    """The ComfyUI folder: $COMFYUI_PATH, the ComfyUI the pack sits in, or an importable ``comfy``."""
    pack_dir = Path(pack_dir).resolve()
    env = environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser().resolve()
        return path if (path / "comfy").is_dir() else None
    if pack_dir.parent.name == "custom_nodes" and (pack_dir.parent.parent / "comfy").is_dir():
        return pack_dir.parent.parent
    try:
        spec = importlib.util.find_spec("comfy")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]).resolve().parent
    return None


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkflowError(RuntimeError):
    """ComfyUI refused or failed a workflow; the message is the host's own explanation."""


class HostServer:
    """``with HostServer(comfyui, pack) as server: server.run(prompt)``.

    Everything the server writes (outputs, user data, its log) goes to a temporary base
    directory whose ``custom_nodes/ShapeFirst`` links to the pack, so the user's own
    ComfyUI folders and other custom nodes are not touched or loaded.
    """

    def __init__(self, comfyui_path, pack_dir, cpu=True, extra_args=(), python=None, startup_timeout=180,
                 models_from=None, extra_custom_nodes=None):
        self.comfyui_path = Path(comfyui_path)
        self.models_from = Path(models_from) if models_from else None
        self.pack_dir = Path(pack_dir).resolve()
        # {folder name: path}: other custom node folders to load beside the pack (the tests' tiny loaders)
        self.extra_custom_nodes = {name: Path(path).resolve() for name, path in (extra_custom_nodes or {}).items()}
        self.cpu = cpu
        self.extra_args = list(extra_args)
        self.python = python or sys.executable
        self.startup_timeout = startup_timeout
        self.client_id = uuid.uuid4().hex
        self.process = None
        self.base_dir = None
        self.port = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self):
        return Path(self.base_dir) / "comfyui.log"

    def _command(self, *extra):
        """main.py with an isolated base directory whose only custom node is this pack."""
        if self.base_dir is None:
            self.base_dir = tempfile.mkdtemp(prefix="shapefirst-host-")
            custom_nodes = Path(self.base_dir) / "custom_nodes"
            custom_nodes.mkdir()
            (custom_nodes / PACK_FOLDER_NAME).symlink_to(self.pack_dir, target_is_directory=True)
            for name, path in self.extra_custom_nodes.items():
                (custom_nodes / name).symlink_to(path, target_is_directory=True)
        command = [self.python, "main.py", "--base-directory", self.base_dir, "--disable-auto-launch",
                   "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_FOLDER_NAME,
                   *self.extra_custom_nodes, *extra]
        if self.cpu:
            command.append("--cpu")
        return command

    def quick_import_check(self, timeout=300):
        """ComfyUI's own CI smoke test: start, load the pack, exit. Returns (exit code, log)."""
        try:
            done = subprocess.run(self._command("--quick-test-for-ci"), cwd=self.comfyui_path, capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        finally:
            self.__exit__(None, None, None)
        return done.returncode, done.stdout + done.stderr

    def __enter__(self):
        self.port = _free_port()
        command = self._command("--listen", "127.0.0.1", "--port", str(self.port))
        if self.models_from is not None:
            command += ["--extra-model-paths-config", self._write_model_paths()]
        command += self.extra_args
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, cwd=self.comfyui_path, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        try:
            self._wait_until_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _write_model_paths(self):
        """Let the isolated server find the user's own models (checkpoints, VAEs, ...)."""
        path = Path(self.base_dir) / "extra_model_paths.yaml"
        folders = ["checkpoints", "clip", "clip_vision", "text_encoders", "diffusion_models", "unet",
                   "vae", "loras", "embeddings", "controlnet"]
        lines = ["user_models:", f"  base_path: {json.dumps(str(self.models_from))}"]
        lines += [f"  {name}: models/{name}/" for name in folders]
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    def _wait_until_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited during start-up (code {self.process.returncode}):\n{self.log_tail()}")
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not answer within {self.startup_timeout} s:\n{self.log_tail()}")

    def __exit__(self, *exc):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.base_dir and not os.environ.get("SHAPEFIRST_KEEP_HOST_DIR"):
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
        return False

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path, payload):
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise WorkflowError(f"ComfyUI refused the workflow: {error.read().decode(errors='replace')}") from None

    def queue(self, prompt):
        return self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})["prompt_id"]

    def wait(self, prompt_id, timeout=600):
        """The prompt's /history entry once it finished; WorkflowError if it failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") != "success":
                    errors = [m for m in status.get("messages", []) if m[0] == "execution_error"]
                    detail = errors[0][1].get("exception_message", "") if errors else status
                    raise WorkflowError(f"workflow failed: {detail}")
                return entry
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited while running the workflow:\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"workflow {prompt_id} did not finish within {timeout} s")

    def run(self, prompt, timeout=600):
        """Queue, wait, and return (history entry, wall seconds from queue to finish)."""
        start = time.perf_counter()
        entry = self.wait(self.queue(prompt), timeout)
        return entry, time.perf_counter() - start


def load_workflow(path):
    with open(path) as f:
        return json.load(f)


def nodes_of_type(prompt, class_type):
    return [node_id for node_id, node in prompt.items() if node.get("class_type") == class_type]
