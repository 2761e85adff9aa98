import stat

import pytest

from frcnn_core.io.atomic import write_atomic, write_bytes_atomic


def test_new_file_is_complete_and_world_readable(tmp_path):
    target = write_bytes_atomic(tmp_path / "sub" / "a.json", b"{}\n")
    assert target.read_bytes() == b"{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_existing_permissions_are_kept(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    target.chmod(0o600)
    write_bytes_atomic(target, b"new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def half_then_fail(stream):
        stream.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
