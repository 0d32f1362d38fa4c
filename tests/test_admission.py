"""apiphant.http.admission: first come, first served, with no socket and no clock luck.

Greenlets in one hub; the order of events is forced with ``gevent.sleep(0)``
and events, never with timings.
"""

import gevent
import gevent.event
import pytest

from apiphant.http.admission import Admission


def test_a_released_slot_goes_to_the_first_waiter_not_to_a_newcomer():
    admission = Admission(1)
    order: list[str] = []
    assert admission.acquire()

    def waiter(name: str) -> None:
        assert admission.acquire()
        order.append(name)
        admission.release()

    first = gevent.spawn(waiter, "first")
    second = gevent.spawn(waiter, "second")
    gevent.sleep(0)  # both are queued
    assert admission.busy() and len(admission.waiters) == 2
    admission.release()
    # A newcomer arrives before the woken waiter has run: it queues behind, it does not
    # take the slot that was handed over (gevent's Semaphore would let it).
    assert admission.busy()
    newcomer = gevent.spawn(waiter, "newcomer")
    gevent.joinall([first, second, newcomer], raise_error=True)
    assert order == ["first", "second", "newcomer"]
    assert admission.active == 0 and not admission.waiters and not admission.busy()


def test_a_wait_past_the_timeout_is_refused_and_leaves_the_queue():
    admission = Admission(1)
    assert admission.acquire()
    assert admission.acquire(timeout=0.01) is False
    assert not admission.waiters and admission.active == 1
    admission.release()
    assert admission.active == 0


def test_a_waiter_killed_in_the_queue_leaves_no_slot_behind():
    admission = Admission(1)
    assert admission.acquire()
    queued = gevent.spawn(admission.acquire)
    gevent.sleep(0)
    queued.kill()
    assert not admission.waiters
    admission.release()
    assert admission.active == 0


def test_a_waiter_killed_after_the_handover_passes_the_slot_on():
    admission = Admission(1)
    assert admission.acquire()

    def request() -> None:
        if admission.acquire():
            try:
                gevent.sleep(10)
            finally:
                admission.release()

    doomed = gevent.spawn(request)
    after = gevent.spawn(admission.acquire)
    gevent.sleep(0)
    admission.release()  # handed to ``doomed``, which has not run yet
    doomed.kill()
    assert after.get(timeout=5) is True
    assert admission.active == 1 and not admission.waiters


@pytest.mark.parametrize("limit", [1, 3])
def test_no_more_than_the_limit_run_at_once(limit):
    admission = Admission(limit)
    gate = gevent.event.Event()
    running = [0]
    most = [0]

    def request() -> None:
        assert admission.acquire()
        running[0] += 1
        most[0] = max(most[0], running[0])
        gate.wait()
        running[0] -= 1
        admission.release()

    greenlets = [gevent.spawn(request) for _ in range(10)]
    gevent.sleep(0)
    assert running[0] == limit
    gate.set()
    gevent.joinall(greenlets, raise_error=True)
    assert most[0] == limit and admission.active == 0
