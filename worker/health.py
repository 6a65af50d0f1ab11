"""HTTP health endpoints for Container Apps probes: `/healthz` (the event loop answers) and `/readyz`
(connected to the queue and not draining)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

__all__ = ["HealthServer"]


class HealthServer:
    """Serves the probes on `host:port` (port 0 picks a free one; read `.port` after `start`)."""

    def __init__(self, *, port: int, ready: Callable[[], bool], host: str = "0.0.0.0") -> None:
        self.port = port
        self._host = host
        self._ready = ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready = self._ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
