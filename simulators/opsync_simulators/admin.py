"""The /_sim admin routes every simulator serves alike; not part of any tool.

admin_routes: faults for the API (queued, a seeded rate, pauses), the latency added to every
API answer (latency.py) and the truth tests compare a hub with. webhook_routes, for the
simulators that send webhooks: their faults, flushing the deliveries held back, and the
deliveries made. A bad request is answered in the tool's own error body (the `error` each
simulator passes), so a client's error handling sees what it would see from the tool.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from opsync_simulators.faults import Fault, Faults
from opsync_simulators.latency import checked_latency
from opsync_simulators.outbox import Outbox, WebhookFaults
from opsync_simulators.responses import JSONResponse

ErrorAnswer = Callable[[int, str], Response]  # the tool's error body: error(400, "bad fault: ...")


class FaultedSim(Protocol):
    faults: Faults
    latency_ms: float

    def inject(self, fault: Fault) -> None: ...

    def truth(self) -> Any: ...  # Truth, or AnalyticsTruth: anything with as_json()


class Sender(Protocol):
    outbox: Outbox


class HookedSim(Protocol):
    @property
    def webhooks(self) -> Sender: ...

    @property
    def deliveries(self) -> list[Any]: ...

    def set_webhook_faults(self, faults: WebhookFaults | None = None) -> None: ...

    def flush_webhooks(self) -> None: ...


def admin_routes(sim: FaultedSim, error: ErrorAnswer, *, answer_with_queue: bool = False) -> APIRouter:
    """/_sim/faults (POST a fault, GET the queue, DELETE all), /_sim/faults/resume,
    /_sim/fault-rate, /_sim/latency (GET, or PUT {"latency_ms": 150}) and /_sim/truth.
    answer_with_queue: a change to the faults is answered with the queue as it now stands
    (GitHub's simulator) rather than 204 No Content."""
    router = APIRouter(prefix="/_sim")

    def queued() -> dict[str, Any]:
        return {"queued": [fault.as_json() for fault in sim.faults.pending()], "paused": sim.faults.paused()}

    def changed(status: int = 200) -> Response:
        return JSONResponse(queued(), status_code=status) if answer_with_queue else Response(status_code=204)

    @router.post("/faults")
    def add_fault(fault: dict[str, Any] = Body(...)) -> Response:
        try:
            sim.inject(Fault(**fault))
        except TypeError as exc:
            return error(400, f"bad fault: {exc}")
        return changed(201)

    @router.get("/faults")
    def list_faults() -> dict[str, Any]:
        return queued()

    @router.delete("/faults")
    def clear_faults() -> Response:
        sim.faults.clear()
        return changed()

    @router.post("/faults/resume")
    def resume() -> Response:
        sim.faults.resume()
        return changed()

    @router.put("/fault-rate")
    def fault_rate(body: dict[str, Any] = Body(...)) -> Any:
        try:
            share, faults, seed = float(body["share"]), body.get("faults", []), int(body.get("seed", 0))
            sim.faults.set_rate(share, [Fault(**kind) for kind in faults], seed)
        except (KeyError, TypeError, ValueError) as exc:
            return error(400, f"bad fault rate (share, faults, seed): {exc}")
        return {"share": share, "faults": faults, "seed": seed}

    @router.get("/latency")
    def latency() -> dict[str, float]:
        return {"latency_ms": sim.latency_ms}

    @router.put("/latency")
    def set_latency(body: dict[str, Any] = Body(...)) -> Any:
        try:
            sim.latency_ms = checked_latency(body["latency_ms"])
        except (KeyError, TypeError, ValueError) as exc:
            return error(400, f"bad latency (latency_ms, 0 to 60000): {exc}")
        return {"latency_ms": sim.latency_ms}

    # Depends: the simulator's own truth parameters (GitHub's include_hidden) are the query's.
    @router.get("/truth")
    def truth(current: Any = Depends(sim.truth)) -> dict[str, Any]:
        return current.as_json()

    return router


def delivery_json(delivery: Any) -> dict[str, Any]:
    """A delivery (a dataclass) as /_sim/deliveries lists it: what the simulator recorded but
    the headers, the body parsed."""
    fields = {name: value for name, value in asdict(delivery).items() if name not in ("headers", "body")}
    return {**fields, "body": json.loads(delivery.body)}


def webhook_routes(
    sim: HookedSim, error: ErrorAnswer, listing: Callable[[Any], dict[str, Any]] = delivery_json
) -> APIRouter:
    """/_sim/webhook-faults (PUT the shares), /_sim/webhook-faults/flush and /_sim/deliveries
    (each delivery as listing shows it)."""
    router = APIRouter(prefix="/_sim")

    @router.put("/webhook-faults")
    def webhook_faults(body: dict[str, Any] = Body(...)) -> Any:
        try:
            sim.set_webhook_faults(WebhookFaults(**body))
        except (TypeError, ValueError) as exc:
            return error(400, f"bad webhook faults: {exc}")
        return {**body, "held": sim.webhooks.outbox.held()}

    @router.post("/webhook-faults/flush")
    def flush_webhooks() -> dict[str, Any]:
        held = sim.webhooks.outbox.held()
        sim.flush_webhooks()
        return {"sent": held}

    @router.get("/deliveries")
    def deliveries() -> list[dict[str, Any]]:
        return [listing(delivery) for delivery in list(sim.deliveries)]

    return router
