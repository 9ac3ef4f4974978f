"""Run e2ep on a local Prefect server: start the server, wait until it answers, serve the deployments of
`prefect.yaml`, and stop both cleanly on Ctrl-C.

    python -m app.serve [--port 4200] [--host 127.0.0.1]     # what `make serve` runs
    python -m app.serve --serve-only                          # deployments only, on $PREFECT_API_URL's server

`prefect.yaml` is the one list of deployments: this module serves them with `prefect.serve` (no work pool
needed), and `prefect deploy --all` registers the same ones on a work pool (see README).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from e2ep.prefect_server import wait_for_api

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "prefect.yaml"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `deployments:` entries of a prefect.yaml (name, entrypoint, parameters, description, tags)."""
    specs = (yaml.safe_load(path.read_text()) or {}).get("deployments") or []
    if not specs:
        raise SystemExit(f"{path} lists no deployments")
    return specs


def serve_deployments(path: Path = PREFECT_YAML) -> None:
    """Serve every deployment of `path` from this process (blocks; each run executes in a subprocess)."""
    from prefect import serve
    from prefect.types.entrypoint import EntrypointType

    deployments = []
    for spec in deployment_specs(path):
        flow = flow_from_entrypoint(spec["entrypoint"])
        deployments.append(flow.to_deployment(name=spec["name"], parameters=spec.get("parameters") or {},
                                              description=spec.get("description"), tags=spec.get("tags") or [],
                                              version=spec.get("version"),
                                              entrypoint_type=EntrypointType.MODULE_PATH))  # fmt: skip
    serve(*deployments)


def flow_from_entrypoint(entrypoint: str) -> Any:
    """`flows/experiment.py:experiment` imported as the module `flows.experiment` (not loaded from its file), so
    runs, pickled subflows and this process all see one module."""
    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


class ServerProcess:
    """`prefect server start` on host:port in a subprocess of its own session, with its own PREFECT_HOME."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, home: str | Path | None = None,
                 log: Any = None, extra_args: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.host, self.port = host, port or free_port(host)
        self.api_url = f"http://{host}:{self.port}/api"
        self.env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        self.env.pop("PREFECT_API_URL", None)  # the server must not think it is a client of another one
        # The UI finds its API through the server's ui-settings, which default to PREFECT_SERVER_API_PORT (4200),
        # not the --port given: tell it the chosen address (unless one was set, e.g. for a reverse proxy).
        self.env.setdefault("PREFECT_UI_API_URL", self.api_url)
        if home is not None:
            self.env["PREFECT_HOME"] = str(home)
        Path(self.env.get("PREFECT_HOME", Path.home() / ".prefect")).mkdir(parents=True, exist_ok=True)
        self._args = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(self.port),
                      *extra_args]  # fmt: skip
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        """Start and wait until `/api/health` answers; TimeoutError (after stopping it) if it never does."""
        return self.launch().wait(timeout_s)

    def launch(self) -> ServerProcess:
        self.process = subprocess.Popen(self._args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        return self

    def wait(self, timeout_s: float) -> ServerProcess:
        try:
            wait_for_api(self.api_url, timeout_s, alive=self.process)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def stop_process(process: subprocess.Popen[Any] | None, grace_s: float = 10.0) -> None:
    """SIGTERM the process's whole session (it may have children), then SIGKILL what outlives `grace_s`."""
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def start_serving(api_url: str, env: dict[str, str] | None = None, log: Any = None) -> subprocess.Popen[bytes]:
    """`python -m app.serve --serve-only` against `api_url`, in a session of its own."""
    child_env = {**(env or os.environ), "PREFECT_API_URL": api_url}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), child_env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "app.serve", "--serve-only"], cwd=REPO, env=child_env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.serve", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--serve-only", action="store_true", help="serve the deployments on $PREFECT_API_URL")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    from e2ep.runtime import configure_environment

    configure_environment()
    if args.serve_only:
        if not os.environ.get("PREFECT_API_URL"):
            raise SystemExit("--serve-only needs PREFECT_API_URL (the server to serve on)")
        wait_for_api(os.environ["PREFECT_API_URL"], args.timeout)  # it may be starting beside us
        serve_deployments()
        return 0

    # Ctrl-C and `kill` both stop the children (SIGINT too when started from a shell that ignored it).
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    server = ServerProcess(args.host, args.port)
    serving = None
    try:
        home = server.env["PREFECT_HOME"]
        print(f"starting the Prefect server on http://{args.host}:{args.port} (PREFECT_HOME={home})", flush=True)
        server.launch()
        serving = start_serving(server.api_url)  # imports the flows while the server starts; waits for it
        server.wait(args.timeout)
        print(f"server ready; UI at http://{args.host}:{args.port}; serving the deployments of {PREFECT_YAML.name}",
              flush=True)  # fmt: skip
        print(f"run one with: PREFECT_API_URL={server.api_url} prefect deployment run 'experiment/ml-100k'",
              flush=True)  # fmt: skip
        while True:
            for name, proc in (("server", server.process), ("deployment server", serving)):
                if proc is not None and proc.poll() is not None:
                    print(f"the {name} exited with status {proc.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_process(serving)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
