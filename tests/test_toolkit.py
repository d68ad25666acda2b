"""What every connector shares: signatures, waits the tools ask for, their timestamps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from opsync.service.contract import WebhookRejected
from opsync.service.toolkit import header, interleaved, retry_after, tool_time, verify_hmac_sha256

# GitHub's documented test vector
SECRET, BODY = "It's a Secret to Everybody", b"Hello, World!"
SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_a_body_signed_with_the_secret_passes_whatever_the_header_case():
    verify_hmac_sha256(BODY, SECRET, {"x-hub-signature-256": SIGNATURE}, header_name="X-Hub-Signature-256", tool="T")
    verify_hmac_sha256(
        BODY,
        SECRET,
        {"X-Hub-Signature-256": SIGNATURE.upper().replace("SHA256", "sha256")},
        header_name="X-Hub-Signature-256",
        tool="T",
    )


@pytest.mark.parametrize(
    ("secret", "headers", "said"),
    [
        (None, {"X-Sig": SIGNATURE}, "no webhook_secret"),
        (SECRET, {}, "missing X-Sig"),
        (SECRET, {"X-Sig": "sha1=abc"}, "must be 'sha256=<hex>'"),
        (SECRET, {"X-Sig": "sha256=" + "0" * 64}, "does not match"),
        (SECRET, {"X-Sig": "sha256=ü" + "0" * 63}, "does not match"),  # not ASCII: refused, not a crash
    ],
)
def test_a_body_not_signed_with_the_secret_is_rejected_saying_why(secret, headers, said):
    with pytest.raises(WebhookRejected, match=said):
        verify_hmac_sha256(BODY, secret, headers, header_name="X-Sig", tool="T")


def test_retry_after_reads_seconds_an_http_date_or_a_spent_budget_reset():
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert retry_after({"retry-after": "7"}, now) == 7
    assert retry_after({"Retry-After": "Thu, 01 Jan 2026 00:00:30 GMT"}, now) == 30
    assert retry_after({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now) + 12)}, now) == 12
    assert retry_after({"X-RateLimit-Remaining": "10", "X-RateLimit-Reset": str(int(now) + 12)}, now) is None
    assert retry_after({"Retry-After": "soon"}, now) is None
    assert header({"Content-Type": "x"}, "content-type") == "x"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T10:15:30Z", datetime(2024, 3, 1, 10, 15, 30, tzinfo=UTC)),
        ("2019-02-15T19:11:18.321-0800", datetime(2019, 2, 16, 3, 11, 18, 321000, tzinfo=UTC)),
        ("2024-03-01T10:15:30+01:00", datetime(2024, 3, 1, 9, 15, 30, tzinfo=UTC)),
        (1709288130000, datetime(2024, 3, 1, 10, 15, 30, tzinfo=UTC)),
        (1709288130, datetime(2024, 3, 1, 10, 15, 30, tzinfo=UTC)),
        ("0001-01-01T00:00:00+01:00", None),  # before year 1 in UTC
        ("not a time", None),
        (None, None),
        (True, None),
        ("", None),
    ],
)
def test_tool_timestamps_become_aware_utc(value, expected):
    assert tool_time(value) == expected


# --- interleaved ------------------------------------------------------------------------------


def _collect(partitions, concurrency):
    async def run():
        return [item async for item in interleaved(partitions, concurrency)]

    return asyncio.run(run())


def test_interleaved_keeps_each_partitions_order_and_yields_every_item():
    async def pages(name, n, pause):
        for i in range(n):
            await asyncio.sleep(pause)
            yield f"{name}{i}"

    got = _collect({"a": pages("a", 5, 0.002), "b": pages("b", 3, 0.001), "c": pages("c", 0, 0)}, 2)
    assert sorted(got) == sorted([("a", f"a{i}") for i in range(5)] + [("b", f"b{i}") for i in range(3)])
    for name in ("a", "b"):
        assert [item for n, item in got if n == name] == sorted(item for n, item in got if n == name)


def test_interleaved_fetches_at_most_concurrency_items_at_once():
    fetching, most = 0, 0

    async def pages():
        nonlocal fetching, most
        for i in range(3):
            fetching += 1
            most = max(most, fetching)
            await asyncio.sleep(0.002)  # the request
            fetching -= 1
            yield i

    got = _collect({str(n): pages() for n in range(6)}, 2)
    assert len(got) == 18 and most == 2


def test_a_partition_between_pages_leaves_its_turn_to_the_others():
    async def pages(name, n):
        for i in range(n):
            await asyncio.sleep(0.002)
            yield f"{name}{i}"

    got = [item for _, item in _collect({"long": pages("long", 6), "a": pages("a", 2), "b": pages("b", 2)}, 1)]
    # one turn, taken in rotation: the short partitions are read while the long one is, and
    # the long one is not read alone after them
    assert got.index("b0") < got.index("long2") and got.index("b1") < got.index("long3")


def test_an_error_in_one_partition_stops_them_all_and_is_raised():
    stopped = []

    async def failing():
        yield 1
        raise RuntimeError("the tool said no")

    async def endless():
        try:
            while True:
                await asyncio.sleep(0.001)
                yield 0
        finally:
            stopped.append(True)

    with pytest.raises(RuntimeError, match="the tool said no"):
        _collect({"bad": failing(), "good": endless()}, 2)
    assert stopped == [True]
