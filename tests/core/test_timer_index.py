"""The timer index answers like a scan of every ticket's deadline, whatever the history."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.sla.timer_index import TimerIndex

tickets = st.sampled_from(["a", "b", "c", "d", "e", "f"])
dues = st.integers(0, 40)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), tickets, st.one_of(st.none(), dues)),
        st.tuples(st.just("discard"), tickets, st.none()),
        st.tuples(st.just("pop"), st.booleans(), dues),
        st.tuples(st.just("peek"), st.none(), st.none()),
    ),
    max_size=120,
)


def _earliest(model: dict[str, int]) -> tuple[int, str] | None:
    return min(((due, ticket) for ticket, due in model.items()), default=None)


@settings(max_examples=400)
@given(operations)
def test_index_agrees_with_a_scan(ops: list[tuple[str, object, object]]) -> None:
    index, model = TimerIndex(), {}
    for op, first, second in ops:
        if op == "set":
            index.set(first, second)  # type: ignore[arg-type]
            if second is None:
                model.pop(first, None)  # type: ignore[arg-type]
            else:
                model[first] = second  # type: ignore[index]
        elif op == "discard":
            index.discard(first)  # type: ignore[arg-type]
            model.pop(first, None)  # type: ignore[arg-type]
        elif op == "pop":
            head = _earliest(model)
            now, inclusive = second, first
            due = head is not None and (head[0] < now or (inclusive and head[0] == now))  # type: ignore[operator]
            assert index.pop_before(now, inclusive) == (head if due else None)  # type: ignore[arg-type]
            if due:
                del model[head[1]]  # type: ignore[index]
        assert index.peek() == _earliest(model)
        assert len(index) == len(model)


def test_a_deadline_moved_later_surfaces_at_its_new_time() -> None:
    index = TimerIndex()
    index.set("T1", 10)
    index.set("T2", 20)
    index.set("T1", 30)  # later: no new entry, re-armed when 10 surfaces
    assert index.pop_before(25, inclusive=True) == (20, "T2")
    assert index.pop_before(25, inclusive=True) is None
    assert index.peek() == (30, "T1")
