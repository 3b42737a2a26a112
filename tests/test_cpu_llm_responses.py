"""canary_triton/cpu_llm/responses.py: the hand-off between the engine thread and one request's
responses. Every wait here is on an event, with a bound against a hang (not a speed target)."""

from __future__ import annotations

import threading

import pytest

from canary_triton.cpu_llm.responses import ChannelOptions, ResponseChannel

WAIT_S = 60.0


class Client:
    """Records deliveries; ``gate`` (when given) holds each delivery until it is set."""

    def __init__(self, gate: threading.Event | None = None, cancelled: bool = False):
        self.sent: list[tuple[list[int], bool]] = []
        self.errors: list[Exception] = []
        self.gate = gate
        self.in_send = threading.Event()
        self.cancelled = cancelled
        self.asked = 0
        self.was_asked = threading.Event()

    def deliver(self, tokens, final):
        self.in_send.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_S)
        self.sent.append((list(tokens), final))

    def deliver_error(self, exc):
        self.errors.append(exc)

    def ask(self):
        self.asked += 1
        self.was_asked.set()
        return self.cancelled


def channel(client: Client, streaming: bool = True, clock=None, **options) -> ResponseChannel:
    extra = {"clock": clock} if clock is not None else {}
    return ResponseChannel(
        ChannelOptions(streaming=streaming, **options), client.deliver, client.deliver_error, client.ask, **extra
    ).start()


def test_streaming_delivers_each_push_and_exactly_one_final():
    client = Client()
    ch = channel(client, check_period_s=3600)
    ch.push([1], False)
    ch.push([2, 3], True)
    assert ch.finished.wait(WAIT_S)
    assert [t for piece, _ in client.sent for t in piece] == [1, 2, 3]
    assert [final for _, final in client.sent].count(True) == 1 and client.sent[-1][1] is True


def test_not_streaming_delivers_every_token_once_with_the_final_flag():
    client = Client()
    ch = channel(client, streaming=False, check_period_s=3600)
    for i in range(5):
        ch.push([i], False)
    ch.push([], True)
    assert ch.finished.wait(WAIT_S)
    assert client.sent == [([0, 1, 2, 3, 4], True)]


def test_a_slow_reader_gets_the_tokens_coalesced_and_the_engine_never_waits():
    gate = threading.Event()
    client = Client(gate)
    ch = channel(client, check_period_s=3600)
    ch.push([1], False)
    assert client.in_send.wait(WAIT_S)  # the first delivery is stuck in the client
    for i in range(2, 50):
        ch.push([i], False)  # returns at once although the delivery in progress does not
    ch.push([50], True)
    gate.set()
    assert ch.finished.wait(WAIT_S)
    assert client.sent == [([1], False), (list(range(2, 51)), True)]  # one response for the 49 behind it


def test_a_send_stuck_past_the_timeout_abandons_its_request_only():
    now = [0.0]
    gate = threading.Event()
    stuck, fine = Client(gate), Client()
    a = channel(stuck, clock=lambda: now[0], check_period_s=3600, send_timeout_s=10)
    b = channel(fine, clock=lambda: now[0], check_period_s=3600, send_timeout_s=10)
    a.push([1], False)
    assert stuck.in_send.wait(WAIT_S)
    assert not a.cancelled()
    now[0] = 10.5  # the delivery has been in progress for 10.5 s
    assert a.abandoned() and a.cancelled()  # the engine stops this request and frees its row
    b.push([7], True)
    assert b.finished.wait(WAIT_S) and fine.sent == [([7], True)] and not b.cancelled()
    gate.set()  # let the stuck thread end
    a.push([], True)
    assert a.finished.wait(WAIT_S)


def test_the_clients_cancellation_is_asked_on_the_channels_thread_and_seen_by_the_engine():
    client = Client(cancelled=True)
    ch = channel(client, check_period_s=0.0)
    ch.push([1], False)  # after this delivery the period has passed: the channel asks
    assert client.was_asked.wait(WAIT_S)
    ch.push([], True)
    assert ch.finished.wait(WAIT_S)
    assert ch.cancelled()  # what the engine reads between its steps


def test_never_asked_after_the_final_response():
    asked_after_final = []
    done = threading.Event()

    def deliver(tokens, final):
        if final:
            done.set()

    def ask():
        if done.is_set():
            asked_after_final.append(1)
        return False

    ch = ResponseChannel(ChannelOptions(streaming=True, check_period_s=0.0), deliver, lambda e: None, ask).start()
    for i in range(20):
        ch.push([i], i == 19)
    assert ch.finished.wait(WAIT_S)
    assert asked_after_final == []


def test_an_error_is_the_final_response_whatever_was_pushed_before():
    client = Client()
    ch = channel(client, streaming=False, check_period_s=3600)
    ch.push([1, 2], False)
    boom = RuntimeError("the LLM engine stopped")
    ch.fail(boom)
    assert ch.finished.wait(WAIT_S)
    assert client.errors == [boom] and client.sent == []


def test_a_delivery_that_raises_cancels_the_request_and_a_failing_ask_does_not():
    def gone(tokens, final):
        raise RuntimeError("Response sender has been closed")

    warnings: list[str] = []
    ch = ResponseChannel(ChannelOptions(streaming=True), gone, lambda e: None, warn=warnings.append).start()
    ch.push([1], False)
    assert ch.finished.wait(WAIT_S) and ch.cancelled()
    assert "Response sender has been closed" in warnings[0] and "the request is cancelled" in warnings[0]

    def broken():
        raise RuntimeError("Failed to check the cancellation of the request")

    client = Client()
    ch = ResponseChannel(
        ChannelOptions(streaming=True, check_period_s=0.0),
        client.deliver,
        client.deliver_error,
        broken,
        warn=warnings.append,
    ).start()
    ch.push([1], False)
    ch.push([2], True)
    assert ch.finished.wait(WAIT_S) and not ch.cancelled()
    assert [t for piece, _ in client.sent for t in piece] == [1, 2]
    assert any("is_cancelled() failed" in w for w in warnings)


@pytest.mark.parametrize("streaming", [True, False])
def test_a_request_that_ends_without_tokens_gets_its_final_response(streaming):
    client = Client()
    ch = channel(client, streaming=streaming, check_period_s=3600)
    ch.push([], True)
    assert ch.finished.wait(WAIT_S)
    assert client.sent == [([], True)]
