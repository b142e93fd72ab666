"""A real LiteLLM proxy (PyPI litellm[proxy]==1.106.2) in its own virtualenv, for the LiteLLM tests.

The venv lives at <repo>/.cache/litellm-venv (override: LMX_LITELLM_VENV) and is built by
build_litellm_venv.sh when missing (about 60 s with PyPI reachable). It is never installed into the
main .venv: litellm's pins conflict with ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("LMX_LITELLM_VENV", HERE.parents[2] / ".cache" / "litellm-venv"))
MASTER_KEY = "sk-lmx-master-test"
FAKE_API_KEY = "sk-FAKE-SECRET-lmx-never-export-4242"

CONFIG = f"""\
model_list:
  - model_name: mock-gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: {FAKE_API_KEY}
      api_base: https://llm-backend.internal.example:8443/v1
      mock_response: "hello from mock"
  - model_name: mock-llama
    litellm_params:
      model: ollama/llama3
      api_base: http://10.1.2.3:11434
      mock_response: "hi"
general_settings:
  master_key: {MASTER_KEY}
litellm_settings:
  callbacks: ["prometheus"]
  require_auth_for_metrics_endpoint: false
"""


def ensure_venv() -> tuple[bool, str]:
    """(ok, message): build the venv if needed."""
    t0 = time.monotonic()
    res = subprocess.run(
        ["bash", str(HERE / "build_litellm_venv.sh"), str(VENV)], capture_output=True, text=True, timeout=900
    )
    if res.returncode != 0 or not (VENV / "bin" / "litellm").exists():
        return False, f"cannot build the LiteLLM venv at {VENV}: {(res.stderr or res.stdout).strip()[-400:]}"
    return True, f"LiteLLM venv ready in {time.monotonic() - t0:.1f}s"


class LitellmProxy:
    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.config = workdir / "litellm.yaml"
        self.config.write_text(CONFIG, encoding="utf-8")
        self.log = workdir / "litellm.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "INFO"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(VENV / "bin" / "litellm"),
                    "--config",
                    str(self.config),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"litellm exited rc={self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health/liveliness", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"litellm did not answer within {timeout}s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def request_count(self, path: str) -> int:
        """GET requests for exactly ``path`` in uvicorn's access log."""
        return self.log.read_text(errors="replace").count(f'"GET {path} HTTP/1.1"')
