"""Run the gateway on uvicorn: ``canary-triton gateway`` and in-process (tests, benchmarks)."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from canary_triton.gateway.app import create_app
from canary_triton.gateway.options import GatewayOptions

#: Seconds requests in flight get to finish after SIGTERM / Ctrl-C.
GRACEFUL_SHUTDOWN_S = 30


def uvicorn_config(opts: GatewayOptions, log_level: str = "info"):
    # uvicorn's own access log prints request lines only; the gateway writes its own (no content).
    return uvicorn.Config(
        create_app(opts),
        host=opts.host,
        port=opts.port,
        access_log=False,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )


def serve(opts: GatewayOptions) -> None:
    """Serve until SIGTERM / Ctrl-C (uvicorn's signal handling)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.Server(uvicorn_config(opts)).run()


class BackgroundGateway:
    """The gateway on uvicorn in a thread of this process (tests, benchmarks):

    with BackgroundGateway(GatewayOptions(triton_url=..., port=free_port())) as gw:
        openai.OpenAI(base_url=gw.base_url, api_key=...)
    """

    def __init__(self, opts: GatewayOptions, log_level: str = "warning"):
        self.opts = opts
        self.server = uvicorn.Server(uvicorn_config(opts, log_level))
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.opts.host}:{self.opts.port}/v1"

    def start(self, timeout_s: float = 60.0) -> "BackgroundGateway":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the gateway did not start on {self.opts.host}:{self.opts.port}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start within {timeout_s:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=GRACEFUL_SHUTDOWN_S + 10)

    def __enter__(self) -> "BackgroundGateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
