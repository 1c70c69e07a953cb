"""Shippers: move events from the spool to each sink, at least once and in order, retrying with backoff.

One thread per sink, each with its own spool cursor. A batch is committed (cursor moved, rejected events stored
as dead letters) only when every event in it is delivered or rejected for good; until then it is retried with
exponential backoff and jitter, for as long as it takes. Stopping leaves the batch in flight uncommitted, so it
is sent again after a restart: duplicates are possible, losses are not, and event ids make duplicates easy to
drop downstream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type, wait_exponential_jitter

from connector.core import metrics
from connector.core.errors import ConfigError
from connector.core.events import SpooledEvent
from connector.delivery.sinks.base import Sink, TransientSinkError
from connector.delivery.spool import Spool

log = logging.getLogger(__name__)

RETRY_AFTER_CEILING = 300.0  # seconds: a receiver's Retry-After is honoured up to this


class Shipper:
    # consecutive unexpected sink errors on one batch before its events are tried one at a time
    ISOLATE_AFTER = 3

    def __init__(
        self, spool: Spool, sink: Sink[Any], *, initial_backoff: float = 0.5, max_backoff: float = 60.0
    ) -> None:
        self.spool = spool
        self.sink = sink
        self.stopping = sink.stopping  # one event: backoffs, ack polls and waits all end when it is set
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._thread = threading.Thread(target=self._run, name=f"ship-{sink.name}", daemon=True)
        self.failed: str | None = None  # why the sink stopped for good (a configuration error)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.spool.wake()  # a shipper waiting for new events
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        """Ship until stopped; no error ends the thread, since a dead shipper would silently stop delivery."""
        backoff = self.initial_backoff
        opened = False
        while not self.stopping.is_set():
            try:
                if not opened:
                    self._retrying(self.sink.open)
                    opened = True
                batch = self.spool.read(self.sink.name, self.sink.settings.batch_events,
                                        self.sink.settings.batch_bytes)
                if not batch:
                    metrics.SPOOL_PENDING.labels(self.sink.name).set(0)
                    self.spool.wait(timeout=1.0)
                    continue
                self._deliver(batch)
                backoff = self.initial_backoff
            except RetryError:
                break  # stopping during a retry
            except ConfigError as exc:
                # retrying cannot help (e.g. ack against a receiver without acknowledgement): stop this sink loudly;
                # its events stay spooled for when the configuration is fixed
                log.error("sink %s stopped: %s; its events stay in the spool", self.sink.name, exc)  # noqa: TRY400
                self.failed = str(exc)
                break
            except Exception:
                log.exception("sink %s: shipping failed; trying again in %.1fs", self.sink.name, backoff)
                self.stopping.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
        try:
            self.sink.close()
        except Exception:
            log.exception("sink %s: error while closing", self.sink.name)

    def _sleep(self, seconds: float) -> None:
        """Backoff that a stop request cuts short."""
        self.stopping.wait(seconds)

    def _retrying(self, attempt: object) -> None:
        def before_sleep(state: RetryCallState) -> None:
            metrics.DELIVERY_RETRIES.labels(self.sink.name).inc()
            error = state.outcome.exception() if state.outcome else None
            log.warning("sink %s: %s; retrying in %.1fs (attempt %d)", self.sink.name, error,
                        state.upcoming_sleep, state.attempt_number)

        backoff = wait_exponential_jitter(multiplier=self.initial_backoff, max=self.max_backoff,
                                          jitter=self.initial_backoff)

        def wait(state: RetryCallState) -> float:
            """The backoff, or the receiver's Retry-After when it asked for longer (never past the ceiling)."""
            error = state.outcome.exception() if state.outcome else None
            asked = error.retry_after if isinstance(error, TransientSinkError) else None
            return max(backoff(state), min(asked or 0.0, RETRY_AFTER_CEILING))

        retrying = Retrying(
            retry=retry_if_exception_type(TransientSinkError),
            wait=wait,
            stop=lambda _state: self.stopping.is_set(),
            sleep=self._sleep,
            before_sleep=before_sleep,
        )
        retrying(attempt)  # type: ignore[arg-type]

    def _deliver(self, batch: Sequence[SpooledEvent]) -> None:
        dead = self._unencodable(batch)
        rejected_early = {event.seq for event, _ in dead}
        pending = [event for event in batch if event.seq not in rejected_early]
        by_seq = {event.seq: event for event in batch}
        delivered = 0
        internal_errors = 0

        def attempt() -> None:
            nonlocal pending, delivered, internal_errors
            if not pending:
                return
            if internal_errors >= self.ISOLATE_AFTER:
                pending, isolated_delivered = self._isolate(pending, dead)
                delivered += isolated_delivered
                internal_errors = 0
                if not pending:
                    return
            try:
                outcome = self.sink.send(pending)
            except (TransientSinkError, ConfigError):
                raise
            except Exception as exc:  # a sink bug must not lose events or kill the shipper
                internal_errors += 1
                log.exception("sink %s failed unexpectedly", self.sink.name)
                raise TransientSinkError(f"internal error: {exc!r}") from exc
            for seq, reason in outcome.rejected.items():
                dead.append((by_seq[seq], reason))
            delivered += len(pending) - len(outcome.rejected) - len(outcome.retry)
            pending = [event for event in pending if event.seq in outcome.retry]
            if pending:
                raise TransientSinkError(outcome.note or f"{len(pending)} events to retry")

        started = time.monotonic()
        try:
            self._retrying(attempt)
        except RetryError:
            log.info("sink %s: stopping with a batch in flight; it will be sent again", self.sink.name)
            return
        discarded = self.spool.commit(self.sink.name, batch[-1].seq, delivered, dead)
        metrics.EVENTS_DELIVERED.labels(self.sink.name).inc(delivered)
        metrics.LAST_DELIVERY.labels(self.sink.name).set_to_current_time()
        metrics.SPOOL_PENDING.labels(self.sink.name).set(self.spool.pending(self.sink.name))
        if dead:
            metrics.EVENTS_DEAD_LETTERED.labels(self.sink.name).inc(len(dead))
            log.error("sink %s rejected %d event(s); kept as dead letters (`connector spool status`): %s",
                      self.sink.name, len(dead), dead[0][1])
        if discarded:
            log.error("dead-letter store full (max_dead_letters=%d): discarded the %d oldest",
                      self.spool.max_dead_letters, discarded)
        log.debug("sink %s: delivered %d events in %.3fs", self.sink.name, delivered, time.monotonic() - started)

    def _unencodable(self, batch: Sequence[SpooledEvent]) -> list[tuple[SpooledEvent, str]]:
        """Events spooled before this sink existed may lack its encoding: never send them empty."""
        missing = []
        formats = sorted(self.sink.formats)
        for event in batch:
            absent = [fmt for fmt in formats if getattr(event, fmt) is None]
            if absent:
                missing.append((event, f"spooled without its {'/'.join(absent).upper()} encoding (written before "
                                       f"sink {self.sink.name} was configured); scan again to send it"))
        return missing

    def _isolate(self, pending: list[SpooledEvent],
                 dead: list[tuple[SpooledEvent, str]]) -> tuple[list[SpooledEvent], int]:
        """After repeated sink bugs on one batch, send its events one at a time and dead-letter only the culprits."""
        survivors: list[SpooledEvent] = []
        delivered = 0
        for event in pending:
            try:
                outcome = self.sink.send([event])
            except TransientSinkError:
                survivors.append(event)
            except Exception as exc:
                log.exception("sink %s fails on event %s; dead-lettered", self.sink.name, event.event_id)
                dead.append((event, f"sink {self.sink.name} failed on this event: {exc!r}"))
            else:
                if event.seq in outcome.rejected:
                    dead.append((event, outcome.rejected[event.seq]))
                elif event.seq in outcome.retry:
                    survivors.append(event)
                else:
                    delivered += 1
        return survivors, delivered


class Shipping:
    """All shippers of one spool."""

    def __init__(self, spool: Spool, sinks: Sequence[Sink[Any]], **backoff: float) -> None:
        self.spool = spool
        self.shippers = [Shipper(spool, sink, **backoff) for sink in sinks]

    def start(self) -> None:
        for shipper in self.shippers:
            shipper.start()

    def stop(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for shipper in self.shippers:
            shipper.stopping.set()
        self.spool.wake()
        for shipper in self.shippers:
            shipper.stop(max(0.1, deadline - time.monotonic()))

    def drain(self, timeout: float) -> dict[str, int]:
        """Wait until every sink caught up (or ``timeout``); returns events still pending per sink."""
        deadline = time.monotonic() + timeout
        names = [shipper.sink.name for shipper in self.shippers]
        while any(self.spool.has_pending(name) for name in names) and time.monotonic() < deadline:
            self.spool.wait(timeout=0.05)  # a commit wakes it early
        return self.spool.pending_counts(names)
