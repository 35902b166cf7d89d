"""Arrow tables between processes (tg_actors/wire.py): exact, slices as slices, out of band."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pyarrow as pa

from tg_actors.sources.batches import records_to_arrow
from tg_actors.wire import from_ipc, to_ipc


def page(first: int, n: int) -> pa.Table:
    return records_to_arrow(
        [
            {
                "id": i,
                "name": f"n{i}" if i % 3 else None,
                "amount": i * 1.5,
                "at": datetime(2024, 1, 1, tzinfo=UTC),
                "tags": ["a", "b"][: i % 3],
                "address": {"city": "Berlin", "zip": str(i)},
                "gone": None,
            }
            for i in range(first, first + n)
        ]
    )


def test_a_staged_batch_comes_back_exactly() -> None:
    table = pa.concat_tables([page(i * 100, 100) for i in range(5)])
    back = from_ipc(to_ipc(table))
    assert back.equals(table)
    assert back.schema == table.schema


def test_a_slice_carries_only_its_rows() -> None:
    table = page(0, 10_000)
    part = table.slice(9_000, 10)
    sent = to_ipc(part)
    assert from_ipc(sent).equals(part)
    assert sent.size < to_ipc(table).size / 100


def test_the_stream_is_pickled_out_of_band_and_read_in_place() -> None:
    table = page(0, 1000)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(to_ipc(table), protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and len(data) < 200  # the rows travel beside the pickle
    received = pickle.loads(data, buffers=buffers)
    back = from_ipc(received)
    assert back.equals(table)
    column = back.column("id").chunk(0).buffers()[1]
    start = received.address
    assert start <= column.address < start + received.size  # no copy on the way in


def test_an_empty_table_and_one_without_columns() -> None:
    empty = page(0, 0)
    assert from_ipc(to_ipc(empty)).equals(empty)
    bare = pa.table({})
    assert from_ipc(to_ipc(bare)).num_columns == 0
