"""Row ids: time-ordered, unique, and made in bulk exactly as one by one."""

from app.db import looks_like_id, new_id, new_ids


def test_bulk_ids_continue_the_sequence_in_order() -> None:
    before = new_id()
    bulk = new_ids(5000)
    after = new_id()
    assert len(set(bulk)) == 5000
    assert [before, *bulk, after] == sorted([before, *bulk, after])
    assert all(len(i) == 32 and looks_like_id(i) for i in bulk)
    assert new_ids(0) == []
