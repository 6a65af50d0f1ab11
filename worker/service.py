"""`voicelive-worker run`: settings → clients → Worker, with health probes and signal handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from worker.admission import AdmittedConnector, TokenBucket
from worker.clients import open_clients
from worker.config import Settings
from worker.health import HealthServer
from worker.pipeline import Ports
from worker.queue import QueueConsumer
from worker.runner import JobEvent, RunnerOptions, Worker
from worker.settle import ResultsPublisher, Settler
from worker.storage import BlobArtifacts, BlobInput
from worker.voice.tools import ToolRegistry

__all__ = ["serve"]

log = logging.getLogger(__name__)


async def serve(
    settings: Settings,
    *,
    options: RunnerOptions | None = None,
    observer: Callable[[JobEvent], None] | None = None,
    started: Callable[[Worker], None] | None = None,
    install_signals: bool = True,
) -> None:
    """Run the worker until SIGTERM/SIGINT (or `worker.shutdown()` via `started`), then drain.

    Raises `ConfigError` for missing settings and `BusFatal` when the queue is unusable.
    """
    options = options or RunnerOptions(
        max_concurrent_jobs=settings.max_concurrent_jobs,
        max_attempts=settings.max_attempts,
        shutdown_grace_s=settings.shutdown_grace_s,
    )
    policy = settings.blob_policy()
    queue_cfg = settings.queue_config()
    async with open_clients(settings, storage=True, voice=True, bus=True) as clients:
        assert clients.blob is not None and clients.voice is not None and clients.bus is not None
        blob = clients.blob
        ports = Ports(
            inputs=BlobInput(blob, max_bytes=settings.max_input_bytes),
            artifacts=lambda ref: BlobArtifacts(blob, ref),
            voice=AdmittedConnector(clients.voice, TokenBucket(settings.voicelive_connects_per_minute)),
            tools=ToolRegistry.default(),
            model_default=settings.voicelive_model,
        )
        consumer = QueueConsumer(clients.bus, queue=queue_cfg.queue)
        async with contextlib.AsyncExitStack() as stack:
            results = None
            if queue_cfg.results_queue:
                sender = await stack.enter_async_context(
                    clients.bus.get_queue_sender(queue_cfg.results_queue)
                )
                results = ResultsPublisher(sender)
            worker = Worker(
                consumer, ports, policy=policy, settler=Settler(consumer, ports, results=results),
                options=options, observer=observer,
            )  # fmt: skip
            health = HealthServer(port=settings.health_port, ready=lambda: worker.ready)
            await health.start()
            stack.push_async_callback(health.aclose)
            if install_signals:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, worker.shutdown)
                    stack.callback(loop.remove_signal_handler, sig)
            log.info(
                "worker up: queue %s, %d slot(s), health on :%d", queue_cfg.queue,
                options.max_concurrent_jobs, health.port,
            )  # fmt: skip
            if started is not None:
                started(worker)
            await worker.run()
            log.info("worker stopped: %r", worker)
