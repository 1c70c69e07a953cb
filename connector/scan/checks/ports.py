"""Exposed services: a TCP connect to each probed port, compared with the asset's expected-ports allowlist.

Only complete TCP handshakes count as open. Services that speak first (SSH, FTP, SMTP, databases' greetings) are
given a moment to send a banner, which the finding quotes; nothing is ever sent to the service.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.core.errors import ProbeError
from connector.core.limits import is_own_resource_error
from connector.core.model import CheckOutcome, RuleResult, Severity, Status, Target
from connector.core.resources import mappings_dir
from connector.probes.endpoint import endpoint_of
from connector.scan.checks.base import Check, check_loads, load_data_file
from connector.scan.context import ScanContext


class Service(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    severity: Severity


class PortsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_severity: Severity = Severity.MEDIUM
    ports: dict[int, Service]


class PortSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ports_file: Path | None = Field(default=None, description="default: mappings/ports.yaml")
    banner_timeout: float = Field(default=1.5, gt=0, le=30, description="seconds to wait for a greeting")
    parallel: int = Field(default=32, ge=1, le=512, description="ports probed at once per asset")

    @property
    def catalogue(self) -> PortsFile:
        return load_data_file(PortsFile, self.ports_file or mappings_dir() / "ports.yaml")

    @model_validator(mode="after")
    def _loads(self) -> PortSettings:
        check_loads(lambda: self.catalogue)
        return self


@dataclass(frozen=True)
class OpenPort:
    port: int
    banner: str


@dataclass(frozen=True)
class PortObservation:
    probed: tuple[int, ...]
    open: tuple[OpenPort, ...]
    errors: dict[int, str]


class PortsCheck(Check[PortObservation, PortSettings]):
    name = "ports"
    description = "open TCP ports outside the asset's expected-ports allowlist, with banners"
    settings_model = PortSettings

    async def observe(self, target: Target, ctx: ScanContext, settings: PortSettings) -> PortObservation:
        asset = target.asset
        ports = tuple(dict.fromkeys(asset.scan_ports if asset.scan_ports is not None
                                    else sorted(settings.catalogue.ports)))
        address = (await endpoint_of(target, ports[0] if ports else 443).resolve(ctx.resolver))[0]
        gate = asyncio.Semaphore(settings.parallel)
        results = await asyncio.gather(*(
            _probe(address, port, ctx.settings.connect_timeout, settings.banner_timeout, gate=gate, sockets=ctx.sockets)
            for port in ports))
        unprobed = {port: result for port, result in zip(ports, results, strict=True) if isinstance(result, OSError)}
        if unprobed:
            # out of descriptors or buffers here: these ports were never asked, so "not open" would be a false pass
            first = next(iter(unprobed.values()))
            raise ProbeError(f"{address}: {len(unprobed)} of {len(ports)} ports could not be probed: this host ran "
                             f"out of resources ({first.strerror or first}), e.g. port {next(iter(unprobed))}",
                             kind="resource")
        open_ports = tuple(result for result in results if isinstance(result, OpenPort))
        errors = {port: result for port, result in zip(ports, results, strict=True) if isinstance(result, str)}
        return PortObservation(ports, open_ports, errors)

    def judge(self, target: Target, observation: PortObservation, settings: PortSettings,
              now: datetime) -> CheckOutcome:
        catalogue = settings.catalogue
        expected = set(target.asset.expected_ports)
        unexpected = [item for item in observation.open if item.port not in expected]
        results = []
        for item in unexpected:
            known = catalogue.ports.get(item.port)
            service = known.service if known else "unknown service"
            banner = f", banner {item.banner!r}" if item.banner else ""
            results.append(RuleResult(
                "ports.unexpected_open", Status.FAIL, f"port {item.port} ({service}) is open{banner}",
                {"port": item.port, "service": service, "banner": item.banner or None,
                 "expected_ports": sorted(expected)},
                severity=known.severity if known else catalogue.default_severity, subject=str(item.port)))
        if not unexpected:
            results.append(RuleResult(
                "ports.unexpected_open", Status.PASS,
                f"no unexpected open port among {len(observation.probed)} probed",
                {"open": [item.port for item in observation.open], "expected_ports": sorted(expected)}))
        observed = {"ports": {"probed": len(observation.probed), "open": [item.port for item in observation.open],
                              "filtered_or_unanswered": sorted(observation.errors)[:50]}}
        return CheckOutcome(results, observed)


async def _probe(address: str, port: int, connect_timeout: float, banner_timeout: float, *,
                 gate: asyncio.Semaphore, sockets: asyncio.Semaphore) -> OpenPort | str | OSError | None:
    """OpenPort if a TCP handshake completes, None if refused, a reason if it timed out or the network said no
    (filtered), and the error itself when this host ran out of resources (the port was never asked)."""
    async with gate, sockets:
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(address, port)
        except TimeoutError:
            return "no answer (filtered)"
        except ConnectionRefusedError:
            return None
        except OSError as exc:
            if is_own_resource_error(exc):
                return exc
            return f"no connection ({exc.strerror or exc})"
        try:
            try:
                async with asyncio.timeout(banner_timeout):
                    data = await reader.read(256)
            except (TimeoutError, OSError):
                data = b""
            return OpenPort(port, _printable(data))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return "".join(char if char.isprintable() else "." for char in text)[:160]


CHECK = PortsCheck()
