"""A pull's pages mapped in a process of its own, beside the one that fetches and writes.

One process pulling a large backfill is bound by the GIL, not by the tool or the database:
fetching, parsing, mapping, serialising the payloads and writing all take turns on it, and
the writer waits for it while the others run. So a pull of more than one page starts a
mapper (`python -m opsync.service.mapper`) and hands it each page's payloads: it maps them
with the rules it was given (pickled: opsync.service.rules, which imports no database code,
so the mapper holds some 40 MB) and serialises each payload canonically, and the pulling
process stores what comes back. The answers are those of mapping in the pulling process: the
same code, on the same payloads, which travel as JSON, as the tools sent them.

Mapping stays in the pulling process when a page holds what JSON cannot carry unchanged,
when a mapping version was applied after the mapper started, when the mapping cannot be
pickled, and for good once the mapper fails; a pull never fails because of it.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from opsync.service.contract import RawRecord
from opsync.service.rules import Mapping, Unified, canonical_bytes

log = logging.getLogger("opsync.mapper")
ANSWER_WITHIN = 120.0  # seconds for one page; a mapper slower than that is stopped

Serialized = tuple[bytes, str]  # a payload's canonical JSON and its hash


@dataclass
class MappedPage:
    records: list[Unified]
    errors: list[str]
    serialized: list[Serialized]  # per raw record


@dataclass
class _Rules:
    """What a mapper maps with."""

    mapping: Mapping
    portfolio: dict[str, str]  # container -> product key
    people: dict[str, str] | None  # account name -> email (people.yaml)
    where: str  # the connection, named in errors


class MapperUnavailable(Exception):
    """The mapper could not be started (the pull maps its pages itself)."""


class Mapper:
    """The mapper of one pull. Several threads may call map() at once: the pages are sent in
    the order of the calls and answered in that order, so the mapper works on the next page
    while this process reads the answer to the one before."""

    def __init__(self, mapping: Mapping, portfolio: dict[str, str], people: dict[str, str] | None, where: str) -> None:
        try:
            rules = pickle.dumps(_Rules(mapping, portfolio, people, where), protocol=pickle.HIGHEST_PROTOCOL)
        except (TypeError, pickle.PicklingError, AttributeError) as error:
            raise MapperUnavailable(f"the mapping cannot be sent to a mapper: {error}") from error
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "opsync.service.mapper", str(theirs.fileno())], pass_fds=[theirs.fileno()]
            )
        except OSError as error:
            ours.close()
            raise MapperUnavailable(f"the mapper did not start: {error}") from error
        finally:
            theirs.close()
        self._pipe = Connection(ours.detach())
        self.where = where
        self._failed = False
        self._sending, self._closing = threading.Lock(), threading.Lock()
        self._turn = threading.Condition()
        self._sent = self._answered = 0  # pages sent, answers read
        try:
            self._pipe.send_bytes(rules)
        except OSError as error:
            self.close()
            raise MapperUnavailable(f"the mapper did not start: {error}") from error

    @property
    def failed(self) -> bool:
        return self._failed

    def map(self, raws: list[RawRecord]) -> MappedPage | None:
        """The page mapped by the mapper; None when it cannot be (map it here then)."""
        try:
            request = orjson.dumps(
                [[raw.record_type, raw.external_id, raw.payload] for raw in raws],
                option=orjson.OPT_PASSTHROUGH_DATETIME,  # a datetime in a payload would come back as text
                default=_not_json,
            )
        except orjson.JSONEncodeError:
            return None  # not a JSON document: mapped here, as it is
        with self._sending:
            if self._failed:
                return None
            try:
                self._pipe.send_bytes(request)
            except OSError as error:
                self._fail(f"{type(error).__name__}: {error}")
                return None
            ticket, self._sent = self._sent, self._sent + 1
        with self._turn:
            self._turn.wait_for(lambda: self._answered == ticket or self._failed)
            if self._failed:
                return None
            try:
                if not self._pipe.poll(ANSWER_WITHIN):
                    raise TimeoutError(f"no answer within {ANSWER_WITHIN:g} s")
                answer = pickle.loads(self._pipe.recv_bytes())
            except (OSError, EOFError, TimeoutError, pickle.UnpicklingError) as error:
                answer = f"{type(error).__name__}: {error}"
            finally:
                self._answered += 1
                self._turn.notify_all()
            if isinstance(answer, str):  # what went wrong, or what the mapper raised
                self._fail(answer)
                return None
        found, errors, texts = answer
        for index, unified in found:  # the versions this process has (JSON would carry them as text)
            unified.version = raws[index].version
        serialized = [(text, hashlib.sha256(text).hexdigest()) for text in texts]  # in C, beside the GIL
        return MappedPage([unified for _, unified in found], errors, serialized)

    def _fail(self, why: str) -> None:
        """Map here from now on; the mapper is ended, so that a call waiting on it returns."""
        with self._turn:
            if not self._failed:
                log.warning("the mapper of %s stopped (%s); the pull maps its pages itself", self.where, why)
            self._failed = True
            self._process.kill()
            self._turn.notify_all()

    def stop(self) -> None:
        """End the mapper (it keeps nothing): a call waiting on it returns."""
        self._failed = True
        self._process.kill()
        self._process.wait()

    def close(self) -> None:
        """stop(), and let go of the pipe, once no call is under way."""
        with self._closing:
            self.stop()
            self._pipe.close()


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def serve(pipe: Connection) -> None:
    """The mapper's loop: its rules first, then per page the records in, and out (index,
    record) of those mapped, the errors and every payload serialised; until the pipe closes."""
    try:
        rules: _Rules = pickle.loads(pipe.recv_bytes())
    except EOFError:
        return
    while True:
        try:
            request = pipe.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            raws = [RawRecord(kind, external_id, payload, None) for kind, external_id, payload in orjson.loads(request)]
            serialized = [canonical_bytes(raw.payload) for raw in raws]
            found, errors = rules.mapping.map_page(raws, rules.portfolio, rules.people, rules.where)
            answer: Any = (found, errors, serialized)
        except Exception as error:  # told to the pulling process, which maps this page and the rest itself
            answer = f"{type(error).__name__}: {error}"
        pipe.send_bytes(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the pulling process ends this one itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(Connection(int(sys.argv[1])))
