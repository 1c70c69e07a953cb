"""The durable spool on a real SQLite file: cursors per sink, restarts, dead letters, overflow policies."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from connector.core.errors import ConfigError
from connector.core.events import NewEvent
from connector.delivery.spool import OverflowPolicy, Spool, SpoolError, SpoolFullError


def events(count: int, start: int = 0, size: int = 10) -> list[NewEvent]:
    return [NewEvent(f"id-{n}", '{"severity":"high"}', b"{" + b'"x":"' + b"a" * size + b'"}', f"CEF:0|n={n}")
            for n in range(start, start + count)]


def ids(batch) -> list[str]:
    return [event.event_id for event in batch]


def test_each_sink_reads_everything_in_order_from_its_own_cursor(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["splunk", "elastic"])
    spool.append(events(5))
    first = spool.read("splunk", limit=3, max_bytes=1 << 20)
    assert ids(first) == ["id-0", "id-1", "id-2"]
    spool.commit("splunk", first[-1].seq, delivered=3)
    assert ids(spool.read("splunk", 10, 1 << 20)) == ["id-3", "id-4"]
    assert ids(spool.read("elastic", 10, 1 << 20)) == [f"id-{n}" for n in range(5)]
    assert spool.read("splunk", 10, 1 << 20)[0].cef == "CEF:0|n=3"


def test_a_restart_resumes_where_each_sink_stopped_and_delivered_events_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, ["a", "b"])
    spool.append(events(4))
    batch = spool.read("a", 4, 1 << 20)
    spool.commit("a", batch[1].seq, delivered=2)
    spool.close()
    again = Spool(path, ["a", "b"])
    assert ids(again.read("a", 10, 1 << 20)) == ["id-2", "id-3"]
    everything = again.read("b", 10, 1 << 20)
    again.commit("b", everything[-1].seq, delivered=4)
    assert again.status().events == 2  # events both sinks passed are gone
    status = {s.sink: s for s in again.status().sinks}
    assert status["a"].pending == 2 and status["b"].pending == 0 and status["b"].delivered == 4


def test_batches_respect_the_byte_budget(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["s"])
    spool.append(events(10, size=1000))
    assert len(spool.read("s", limit=100, max_bytes=3500)) == 3
    assert len(spool.read("s", limit=100, max_bytes=10)) == 1  # one oversized event still goes alone


def test_dead_letters_are_kept_replayed_to_their_sink_only_and_purged(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["splunk", "elastic"])
    spool.append(events(3))
    batch = spool.read("splunk", 10, 1 << 20)
    spool.commit("splunk", batch[-1].seq, delivered=2, dead=[(batch[1], "HEC code 6: Invalid data format")])
    letters = spool.dead_letters()
    assert [(sink, event_id, reason) for _, sink, event_id, reason, _ in letters] == [
        ("splunk", "id-1", "HEC code 6: Invalid data format")]
    assert spool.replay("splunk") == (1, 0)
    assert ids(spool.read("splunk", 10, 1 << 20)) == ["id-1"]
    assert ids(spool.read("elastic", 10, 1 << 20)) == ["id-0", "id-1", "id-2"]  # not duplicated for elastic
    replayed = spool.read("splunk", 10, 1 << 20)
    spool.commit("splunk", replayed[-1].seq, delivered=0, dead=[(replayed[0], "still bad")])
    assert spool.purge("splunk") == 1
    assert spool.dead_letters() == []


def test_purging_a_backlog_skips_a_sinks_undelivered_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["gone"])
    spool.append(events(7))
    assert spool.purge("gone", backlog=True) == 7
    assert spool.read("gone", 10, 1 << 20) == []
    assert spool.status().events == 0


def test_overflow_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["s"], max_events=10)
    assert spool.append(events(8)) == 0
    assert spool.append(events(5, start=8)) == 3
    assert ids(spool.read("s", 100, 1 << 20)) == [f"id-{n}" for n in range(3, 13)]
    assert spool.status().dropped == 3


def test_overflow_by_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["s"], max_bytes=5000)
    spool.append(events(4, size=1000))
    assert spool.append(events(2, start=4, size=1000)) >= 1
    assert spool.status().bytes <= 5000


def test_block_policy_makes_producers_wait_for_room(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["s"], max_events=5, overflow=OverflowPolicy.BLOCK)
    spool.append(events(5))
    with pytest.raises(SpoolFullError):
        spool.append(events(1, start=5), timeout=0.2)
    appended = threading.Event()

    def producer() -> None:
        spool.append(events(2, start=5), timeout=10)
        appended.set()

    thread = threading.Thread(target=producer)
    thread.start()
    time.sleep(0.2)
    assert not appended.is_set()
    batch = spool.read("s", 3, 1 << 20)
    spool.commit("s", batch[-1].seq, delivered=3)
    thread.join(5)
    assert appended.is_set()
    assert ids(spool.read("s", 10, 1 << 20)) == ["id-3", "id-4", "id-5", "id-6"]


def test_sinks_added_later_get_what_is_still_spooled_and_removed_sinks_stop_holding_events(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, ["old"])
    spool.append(events(3))
    spool.close()
    spool = Spool(path, ["new"])
    assert ids(spool.read("new", 10, 1 << 20)) == ["id-0", "id-1", "id-2"]
    batch = spool.read("new", 10, 1 << 20)
    spool.commit("new", batch[-1].seq, delivered=3)
    assert spool.status().events == 0  # "old" no longer blocks collection


def test_an_appended_event_survives_the_process_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\nfrom connector.core.events import NewEvent\n"
        "from connector.delivery.spool import Spool\n"
        f"spool = Spool(Path({str(path)!r}), ['s'])\n"
        "spool.append([NewEvent(f'id-{n}', '{}', b'{}', None) for n in range(1000)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False)
    assert done.returncode == -9
    assert len(Spool(path, ["s"]).read("s", 5000, 1 << 30)) == 1000


def test_admin_commands_neither_create_a_spool_nor_touch_cursors(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    with pytest.raises(ConfigError, match="no spool at"):
        Spool.existing(path)
    assert not path.exists()
    spool = Spool(path, ["splunk", "elastic"])
    spool.append(events(2))
    spool.close()
    admin = Spool.existing(path)
    assert admin.sinks() == ["elastic", "splunk"]
    assert {s.sink: s.pending for s in admin.status().sinks} == {"elastic": 2, "splunk": 2}


def test_dropping_a_removed_sinks_cursor_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "spool.sqlite"
    Spool(path, ["old", "kept"]).append(events(4))
    with caplog.at_level("WARNING"):
        Spool(path, ["kept"])
    assert "sink old is no longer configured" in caplog.text and "4 event(s)" in caplog.text


def test_replay_leaves_dead_letters_of_unconfigured_sinks_in_place(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, ["old", "kept"])
    spool.append(events(2))
    batch = spool.read("old", 10, 1 << 20)
    spool.commit("old", batch[-1].seq, delivered=1, dead=[(batch[0], "mapping conflict")])
    spool.close()
    spool = Spool(path, ["kept"])
    assert spool.replay() == (0, 1)
    assert spool.status().orphaned_dead_letters == 1


def test_dead_letters_are_bounded_and_the_discarded_are_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["s"], max_dead_letters=3)
    spool.append(events(5))
    batch = spool.read("s", 10, 1 << 20)
    assert spool.commit("s", batch[-1].seq, delivered=0, dead=[(event, "bad") for event in batch]) == 2
    assert [event_id for _, _, event_id, _, _ in spool.dead_letters()] == ["id-2", "id-3", "id-4"]
    assert spool.status().dead_letters_discarded == 2


def test_a_failed_write_is_rolled_back_and_the_spool_stays_usable(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["s"])
    spool.append(events(2))
    broken = NewEvent(None, "{}", b"{}", None)  # type: ignore[arg-type] - violates NOT NULL
    with pytest.raises(SpoolError, match="NOT NULL"):
        spool.append([*events(3, start=2), broken])
    assert spool.status().events == 2  # neither the good rows nor the totals of the failed batch stayed
    spool.append(events(1, start=9))
    assert ids(spool.read("s", 10, 1 << 20)) == ["id-0", "id-1", "id-9"]


def test_a_blocked_producer_gives_up_when_asked_to_stop(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["s"], max_events=2, overflow=OverflowPolicy.BLOCK)
    spool.append(events(2))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(SpoolFullError, match="full"):
        spool.append(events(1, start=2), timeout=30, stop=stop)
    assert time.monotonic() - started < 5


def test_an_empty_spool_takes_a_batch_larger_than_its_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["s"], max_events=2, overflow=OverflowPolicy.BLOCK)
    spool.append(events(5), timeout=0.1)
    assert len(spool.read("s", 10, 1 << 20)) == 5
