"""File commands: real files and symbolic links in tmp_path, the real store for the records.

What is tried, and must be refused without touching anything outside the
roots: ``../`` escapes (plain, after a subdirectory, a bare ``..``),
absolute paths outside the roots (``/etc/passwd``, a sibling directory
whose name starts like the root's), a symbolic link to ``/etc`` inside a
root (listed through, read through, stat'ed, deleted), a link to a file
outside, a symlinked directory inside the root (allowed: it stays inside),
a root that is itself a symbolic link, a directory or file swapped for a
link between the check and the use (time of check / time of use), a FIFO,
size limits both ways, overwrite refusal for upload and move, chunked
transfers, and the path-based fallback used where the OS has no
directory descriptors (Windows).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from test_store_support import make_store

from agent.files import Files, descriptors, paths, transfer
from agent.access_log import AccessLog
from agent.context import AgentContext, CommandError, LocalPolicy
from agent.outbox import Priority
from broker.core.envelope import Kind
from broker.persister.store import Record

AUDITED = ["files.list", "files.stat", "files.download", "files.upload", "files.move", "files.delete"]


class Reports:
    """Collects what a handler keeps for the store (stands in for the outbox's report)."""

    def __init__(self):
        self.items: list[tuple[Kind, str, dict, object]] = []

    def __call__(self, kind, name, data, priority=None) -> str:
        self.items.append((kind, name, data, priority))
        return f"m{len(self.items)}"

    @property
    def fileops(self) -> list[dict]:
        return [data for kind, name, data, _p in self.items if kind is Kind.EVENT and name == "fileop"]


@pytest.fixture(params=["fd", "paths"])
def mode(request, monkeypatch):
    """Run each test with directory descriptors and with the path-only fallback."""
    if request.param == "paths":
        monkeypatch.setattr(descriptors, "FD_RELATIVE", False)
    elif not descriptors.FD_RELATIVE:
        pytest.fail("no directory descriptors: the Linux path must have them")
    return request.param


@pytest.fixture
def tree(tmp_path):
    """root/ with a file and a subdirectory; outside/ with a secret next to it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "b.txt").write_bytes(b"beta")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    return root, outside


def make_ctx(tmp_path: Path, roots: list[Path], **policy) -> AgentContext:
    return AgentContext(
        client_id="a1",
        data_dir=tmp_path / "data",
        policy=LocalPolicy(allowed_roots=roots, **policy),
        access_log=AccessLog(tmp_path / "data" / "access.log").record,
        notify=lambda title, text: None,
        report=Reports(),
        operator="op-alice",
        command_id="cmd-files",
    )


@pytest.fixture
def ctx(tmp_path, tree, mode):
    return make_ctx(tmp_path, [tree[0]])


def run(ctx: AgentContext, name: str, **args) -> dict:
    return Files().handlers()[name](args, ctx)


def refused(ctx: AgentContext, name: str, error=paths.PathRefused, **args) -> str:
    with pytest.raises(error) as info:
        run(ctx, name, **args)
    assert ctx.report.fileops[-1]["ok"] is False
    return str(info.value)


# -- no roots ---------------------------------------------------------------------------


def test_without_roots_every_command_is_refused_and_says_how_to_configure(tmp_path, tree):
    ctx = make_ctx(tmp_path, [])
    for name in AUDITED + ["files.roots"]:
        with pytest.raises(CommandError, match="allowed_roots") as info:
            run(ctx, name, path=str(tree[0] / "a.txt"), dest=str(tree[0] / "x"), data=b"x")
        assert "no allowed roots are configured" in str(info.value)
    ops = ctx.report.fileops
    assert [op["op"] for op in ops] == ["list", "stat", "download", "upload", "move", "delete"]
    assert all(op["ok"] is False and op["operator"] == "op-alice" for op in ops)
    assert (tree[0] / "a.txt").read_bytes() == b"alpha"


def test_relative_roots_are_ignored(tmp_path, tree):
    ctx = make_ctx(tmp_path, [Path("relative/root")])
    with pytest.raises(CommandError, match="no allowed roots"):
        run(ctx, "files.list", path="a.txt")


# -- reading ----------------------------------------------------------------------------


def test_list_pages_sorted_entries_with_types(ctx, tree):
    root, _ = tree
    for i in range(5):
        (root / f"f{i}.bin").write_bytes(b"x" * i)
    (root / "link").symlink_to("a.txt")
    first = run(ctx, "files.list", path=str(root), limit=3)
    assert [e["name"] for e in first["entries"]] == ["a.txt", "f0.bin", "f1.bin"]
    assert first["total"] == 8 and first["next_offset"] == 3
    names, offset = [], 0
    while offset is not None:
        page = run(ctx, "files.list", path=".", offset=offset, limit=3)
        names += [e["name"] for e in page["entries"]]
        offset = page["next_offset"]
    assert names == sorted(["a.txt", "sub", "link"] + [f"f{i}.bin" for i in range(5)])
    by_name = {e["name"]: e for e in run(ctx, "files.list", path=".", limit=1000)["entries"]}
    assert by_name["a.txt"] == {"name": "a.txt", "type": "file", "size": 5, "mtime": pytest.approx((root / "a.txt").stat().st_mtime)}
    assert by_name["sub"]["type"] == "dir"
    assert by_name["link"]["type"] == "link" and by_name["link"]["target"] == "a.txt"
    assert run(ctx, "files.list", path="sub")["entries"][0]["name"] == "b.txt"
    with pytest.raises(CommandError, match="limit"):
        run(ctx, "files.list", path=".", limit=0)


def test_stat_describes_the_entry_itself(ctx, tree):
    root, outside = tree
    (root / "in_link").symlink_to(root / "a.txt")
    (root / "out_link").symlink_to(outside / "secret.txt")
    assert run(ctx, "files.stat", path="a.txt") | {"mtime": 0} == {
        "path": str(root / "a.txt"), "name": "a.txt", "type": "file", "size": 5, "mtime": 0,
        "mode": oct(stat.S_IMODE((root / "a.txt").stat().st_mode)),
    }
    assert run(ctx, "files.stat", path=str(root))["type"] == "dir"
    inside = run(ctx, "files.stat", path="in_link")
    assert (inside["type"], inside["target_inside_roots"]) == ("link", True)
    out = run(ctx, "files.stat", path="out_link")
    assert (out["type"], out["target"], out["target_inside_roots"]) == ("link", str(outside / "secret.txt"), False)


def test_download_whole_and_in_chunks(ctx, tree, monkeypatch):
    root, _ = tree
    got = run(ctx, "files.download", path="a.txt")
    assert (got["data"], got["size"], got["eof"], got["next_offset"]) == (b"alpha", 5, True, None)
    monkeypatch.setattr(transfer, "MAX_CHUNK_BYTES", 1000)
    blob = os.urandom(2500)
    (root / "big.bin").write_bytes(blob)
    parts, offset = [], 0
    while offset is not None:
        chunk = run(ctx, "files.download", path="big.bin", offset=offset)
        assert chunk["length"] <= 1000 and chunk["size"] == 2500
        parts.append(chunk["data"])
        offset = chunk["next_offset"]
    assert b"".join(parts) == blob and len(parts) == 3
    assert run(ctx, "files.download", path="big.bin", offset=10, length=5)["data"] == blob[10:15]
    assert run(ctx, "files.download", path="big.bin", offset=2500)["data"] == b""
    with pytest.raises(CommandError, match="past the end"):
        run(ctx, "files.download", path="big.bin", offset=2501)
    assert [op["size"] for op in ctx.report.fileops[1:4]] == [1000, 1000, 500]


def test_download_refuses_files_over_the_limit_directories_and_fifos(tmp_path, tree, mode):
    root, _ = tree
    ctx = make_ctx(tmp_path, [root], max_file_bytes=100)
    (root / "big.bin").write_bytes(b"x" * 101)
    (root / "ok.bin").write_bytes(b"x" * 100)
    assert "allows downloads up to 100 bytes" in refused(ctx, "files.download", CommandError, path="big.bin")
    assert run(ctx, "files.download", path="ok.bin")["size"] == 100
    assert "not a regular file (dir)" in refused(ctx, "files.download", CommandError, path="sub")
    os.mkfifo(root / "pipe")  # opening a FIFO must neither block nor read
    assert "not a regular file (other)" in refused(ctx, "files.download", CommandError, path="pipe")
    assert "no such file" in refused(ctx, "files.download", CommandError, path="missing.txt")


# -- escapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("op", AUDITED)
@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt", "sub/../../outside/secret.txt", "..", "/etc/passwd", "{outside}/secret.txt",
        "{root}/../outside/secret.txt", "{root}2/x.txt",
    ],
)
def test_paths_outside_the_root_are_refused_for_every_command(ctx, tree, op, path):
    root, outside = tree
    sibling = Path(f"{root}2")  # "/tmp/x/root2" starts with "/tmp/x/root" as a string
    sibling.mkdir()
    (sibling / "x.txt").write_bytes(b"sibling")
    path = path.format(root=root, outside=outside)
    args = {"path": path, "dest": "moved.txt", "data": b"evil", "overwrite": True, "recursive": True}
    if op == "files.move":  # the destination must be checked as well as the source
        message = refused(ctx, op, **{**args, "path": "a.txt", "dest": path})
        assert (root / "a.txt").exists()
        args = {**args, "dest": "moved.txt"}
    message = refused(ctx, op, **args)
    assert "outside the allowed roots" in message or "allowed root" in message
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert (sibling / "x.txt").read_bytes() == b"sibling"
    assert not (root / "moved.txt").exists()
    assert Path("/etc/passwd").exists()
    record = ctx.report.fileops[-1]
    assert (record["ok"], record["operator"]) == (False, "op-alice")
    assert record["path"] == path or path in record["path"]


def test_a_symlink_to_etc_inside_the_root_is_not_followed(ctx, tree):
    root, _ = tree
    (root / "etc").symlink_to("/etc")
    (root / "passwd").symlink_to("/etc/passwd")
    for op, args in [
        ("files.list", {"path": "etc"}),
        ("files.list", {"path": "etc/ssh"}),
        ("files.download", {"path": "etc/passwd"}),
        ("files.download", {"path": "passwd"}),
        ("files.stat", {"path": "etc/passwd"}),
        ("files.upload", {"path": "etc/ems-test.txt", "data": b"x"}),
        ("files.delete", {"path": "etc/hostname"}),
        ("files.move", {"path": "a.txt", "dest": "etc/a.txt"}),
    ]:
        assert "outside the allowed roots" in refused(ctx, op, **args), (op, args)
    assert not Path("/etc/ems-test.txt").exists() and not Path("/etc/a.txt").exists()
    # the link itself lives in the root: it may be described, moved and deleted (never its target)
    assert run(ctx, "files.stat", path="passwd")["target_inside_roots"] is False
    run(ctx, "files.move", path="passwd", dest="passwd2")
    run(ctx, "files.delete", path="passwd2")
    run(ctx, "files.delete", path="etc", recursive=True)
    assert Path("/etc").is_dir() and Path("/etc/passwd").exists()
    assert not (root / "etc").is_symlink() and not (root / "etc").exists()


def test_a_symlinked_directory_inside_the_root_works_like_its_target(ctx, tree):
    root, _ = tree
    (root / "alias").symlink_to(root / "sub", target_is_directory=True)
    assert [e["name"] for e in run(ctx, "files.list", path="alias")["entries"]] == ["b.txt"]
    assert run(ctx, "files.download", path="alias/b.txt")["data"] == b"beta"
    assert run(ctx, "files.upload", path="alias/new.txt", data=b"via alias")["path"] == str(root / "sub" / "new.txt")
    assert (root / "sub" / "new.txt").read_bytes() == b"via alias"
    run(ctx, "files.delete", path="alias")  # deletes the link, not the directory
    assert (root / "sub" / "b.txt").exists() and not (root / "alias").exists()


def test_a_root_that_is_itself_a_symlink_is_resolved(tmp_path, tree, mode):
    real_root, _ = tree
    link_root = tmp_path / "link_root"
    link_root.symlink_to(real_root, target_is_directory=True)
    ctx = make_ctx(tmp_path, [link_root])
    assert run(ctx, "files.roots")["roots"] == [{"path": str(link_root), "resolved": str(real_root), "exists": True}]
    assert run(ctx, "files.download", path=str(link_root / "a.txt"))["data"] == b"alpha"
    assert run(ctx, "files.download", path=str(real_root / "a.txt"))["path"] == str(real_root / "a.txt")
    assert [e["name"] for e in run(ctx, "files.list", path=str(link_root))["entries"]] == ["a.txt", "sub"]
    assert run(ctx, "files.list", path=".")["path"] == str(real_root)
    refused(ctx, "files.download", path=str(link_root / ".." / "outside" / "secret.txt"))
    refused(ctx, "files.download", path="../outside/secret.txt")
    # the root itself is not an entry to delete, move or replace
    for op, args in [("files.delete", {"path": str(link_root), "recursive": True}), ("files.delete", {"path": "."}),
                     ("files.move", {"path": ".", "dest": "x"}), ("files.upload", {"path": str(link_root), "data": b"x"})]:
        assert "allowed root itself" in refused(ctx, op, CommandError, **args)
    assert link_root.is_symlink() and (real_root / "a.txt").exists()


def test_a_root_nested_in_another_root_cannot_be_deleted_through_it(tmp_path, tree, mode):
    root, _ = tree
    ctx = make_ctx(tmp_path, [root, root / "sub"])
    assert "allowed root itself" in refused(ctx, "files.delete", CommandError, path="sub", recursive=True)
    assert (root / "sub" / "b.txt").exists()


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(tmp_path, tree):
    """Time of check vs time of use: the parent walk uses O_NOFOLLOW on every component."""
    if not descriptors.FD_RELATIVE:
        pytest.fail("no directory descriptors: the Linux path must have them")
    root, outside = tree
    ctx = make_ctx(tmp_path, [root])
    checked = paths.resolve(ctx.policy, "sub/b.txt")
    (root / "sub").rename(root / "sub.old")
    (root / "sub").symlink_to(outside, target_is_directory=True)
    (outside / "b.txt").write_bytes(b"outside b")
    with pytest.raises(paths.PathRefused, match="symbolic link"):
        transfer.read_chunk(checked, 0, None, 1000)
    listing = paths.resolve(ctx.policy, "sub")
    (root / "sub").unlink()
    (root / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(paths.PathRefused), descriptors.directory(listing):
        pass


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused(tmp_path, tree):
    if not descriptors.FD_RELATIVE:
        pytest.fail("no O_NOFOLLOW: the Linux path must have it")
    root, outside = tree
    ctx = make_ctx(tmp_path, [root])
    checked = paths.follow(ctx.policy, paths.resolve(ctx.policy, "a.txt"))
    (root / "a.txt").unlink()
    (root / "a.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(paths.PathRefused, match="symbolic link"):
        transfer.read_chunk(checked, 0, None, 1000)


# -- writing ----------------------------------------------------------------------------


def test_upload_creates_refuses_overwrite_then_replaces_atomically(ctx, tree):
    root, _ = tree
    result = run(ctx, "files.upload", path="sub/new.txt", data=b"one")
    assert result == {"path": str(root / "sub" / "new.txt"), "complete": True, "size": 3, "replaced": False}
    assert (root / "sub" / "new.txt").read_bytes() == b"one"
    assert stat.S_IMODE((root / "sub" / "new.txt").stat().st_mode) == 0o644
    assert "already exists" in refused(ctx, "files.upload", CommandError, path="sub/new.txt", data=b"two")
    assert (root / "sub" / "new.txt").read_bytes() == b"one"
    os.chmod(root / "sub" / "new.txt", 0o600)
    before = (root / "sub" / "new.txt").stat().st_ino
    assert run(ctx, "files.upload", path="sub/new.txt", data=b"two", overwrite=True)["replaced"] is True
    assert (root / "sub" / "new.txt").read_bytes() == b"two"
    assert (root / "sub" / "new.txt").stat().st_ino != before  # a new file took the name: no half-written state
    assert stat.S_IMODE((root / "sub" / "new.txt").stat().st_mode) == 0o600  # the replaced file's mode is kept
    assert "is a directory" in refused(ctx, "files.upload", CommandError, path="sub", data=b"x", overwrite=True)
    assert "no such file" in refused(ctx, "files.upload", CommandError, path="nodir/x.txt", data=b"x")
    assert "data must be bytes" in refused(ctx, "files.upload", CommandError, path="x.txt", data="text")
    assert sorted(p.name for p in (root / "sub").iterdir()) == ["b.txt", "new.txt"]  # no part files left


def test_upload_size_limit(tmp_path, tree, mode):
    root, _ = tree
    ctx = make_ctx(tmp_path, [root], max_file_bytes=10)
    assert "upload limit of 10 bytes" in refused(ctx, "files.upload", CommandError, path="big.txt", data=b"x" * 11)
    assert "upload limit" in refused(ctx, "files.upload", CommandError, path="big.txt", data=b"x", total_size=11)
    assert not (root / "big.txt").exists()
    run(ctx, "files.upload", path="ok.txt", data=b"x" * 10)


def test_chunked_upload_appears_only_when_complete(ctx, tree):
    root, _ = tree
    blob = os.urandom(2500)
    assert run(ctx, "files.upload", path="big.bin", data=blob[:1000], total_size=2500) == {
        "path": str(root / "big.bin"), "complete": False, "received": 1000, "total_size": 2500,
    }
    assert not (root / "big.bin").exists()
    assert "out of order" in refused(ctx, "files.upload", CommandError, path="big.bin", data=blob[2000:], offset=2000, total_size=2500)
    run(ctx, "files.upload", path="big.bin", data=blob[1000:2000], offset=1000, total_size=2500)
    assert "past total_size" in refused(ctx, "files.upload", CommandError, path="big.bin", data=blob[2000:] + b"!", offset=2000, total_size=2500)
    assert run(ctx, "files.upload", path="big.bin", data=blob[2000:], offset=2000, total_size=2500)["complete"] is True
    assert (root / "big.bin").read_bytes() == blob
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    assert "no upload of" in refused(ctx, "files.upload", CommandError, path="other.bin", data=b"x", offset=5, total_size=10)


def test_upload_replaces_a_symlink_instead_of_writing_through_it(ctx, tree):
    root, outside = tree
    (root / "victim").symlink_to(outside / "secret.txt")
    assert "already exists" in refused(ctx, "files.upload", CommandError, path="victim", data=b"evil")
    run(ctx, "files.upload", path="victim", data=b"mine", overwrite=True)
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert not (root / "victim").is_symlink() and (root / "victim").read_bytes() == b"mine"


def test_move_renames_without_clobbering_unless_asked(ctx, tree):
    root, _ = tree
    assert run(ctx, "files.move", path="a.txt", dest="sub/a2.txt") == {
        "path": str(root / "a.txt"), "dest": str(root / "sub" / "a2.txt"), "type": "file",
    }
    assert (root / "sub" / "a2.txt").read_bytes() == b"alpha" and not (root / "a.txt").exists()
    assert "already exists" in refused(ctx, "files.move", CommandError, path="sub/a2.txt", dest="sub/b.txt")
    assert (root / "sub" / "b.txt").read_bytes() == b"beta" and (root / "sub" / "a2.txt").exists()
    run(ctx, "files.move", path="sub/a2.txt", dest="sub/b.txt", overwrite=True)
    assert (root / "sub" / "b.txt").read_bytes() == b"alpha"
    (root / "dir").mkdir()
    assert "existing directory" in refused(ctx, "files.move", CommandError, path="sub/b.txt", dest="dir", overwrite=True)
    assert "allowed root itself" in refused(ctx, "files.move", CommandError, path="sub/b.txt", dest=".", overwrite=True)
    run(ctx, "files.move", path="sub", dest="sub2")  # directories move too
    assert (root / "sub2" / "b.txt").exists()
    assert "already exists" in refused(ctx, "files.move", CommandError, path="sub2", dest="sub2/b.txt")
    record = ctx.report.fileops[0]
    assert record["path"] == f"{root / 'a.txt'} -> {root / 'sub' / 'a2.txt'}"
    assert (record["src"], record["dest"], record["size"]) == (str(root / "a.txt"), str(root / "sub" / "a2.txt"), 5)


def test_delete_files_empty_dirs_and_only_recursively_full_ones(ctx, tree):
    root, outside = tree
    (root / "empty").mkdir()
    (root / "sub" / "deep").mkdir()
    (root / "sub" / "deep" / "out").symlink_to(outside, target_is_directory=True)
    assert run(ctx, "files.delete", path="a.txt") == {"path": str(root / "a.txt"), "deleted": "file"}
    assert run(ctx, "files.delete", path="empty")["deleted"] == "dir"
    assert "recursive: true" in refused(ctx, "files.delete", CommandError, path="sub")
    assert (root / "sub" / "b.txt").exists()
    run(ctx, "files.delete", path="sub", recursive=True)
    assert not (root / "sub").exists()
    assert (outside / "secret.txt").read_bytes() == b"secret"  # the link inside was removed, not followed
    assert "no such file" in refused(ctx, "files.delete", CommandError, path="a.txt")
    assert "true or false" in refused(ctx, "files.delete", CommandError, path="x", recursive="yes")


# -- the record -------------------------------------------------------------------------


def test_every_operation_is_recorded_for_the_store_and_the_access_log(tmp_path, tree, mode):
    root, _ = tree
    ctx = make_ctx(tmp_path, [root])
    run(ctx, "files.list", path=".")
    run(ctx, "files.download", path="a.txt")
    with pytest.raises(paths.PathRefused):
        run(ctx, "files.download", path="../outside/secret.txt")
    assert all(kind is Kind.EVENT and name == "fileop" and prio is Priority.IMPORTANT for kind, name, _d, prio in ctx.report.items)
    store = make_store(tmp_path)
    try:
        # the broker's record of the command names its operator; the store takes it from there
        sent = Record("command_status", "a1", "c1", 999.0, "command.a1",
                      {"id": "cmd-files", "target": "a1", "name": "files.list", "status": "queued", "operator": "op-alice"})
        assert all(data["command"] == "cmd-files" for data in ctx.report.fileops)
        batch = store.write_batch(
            [sent, *(Record("event", "a1", f"m{i}", 1000.0 + i, "event.a1.fileop", data) for i, data in enumerate(ctx.report.fileops))]
        )
        assert (batch.new, batch.rejected) == (4, [])
        rows = store.query("fileops", order="asc")
    finally:
        store.close()
    assert [(r["op"], r["ok"], r["operator"]) for r in rows] == [("list", True, "op-alice"), ("download", True, "op-alice"), ("download", False, "op-alice")]
    assert rows[1]["path"] == str(root / "a.txt") and rows[1]["size"] == 5
    assert rows[2]["path"] == "../outside/secret.txt" and "outside the allowed roots" in rows[2]["error"]
    log_text = AccessLog(tmp_path / "data" / "access.log").read()
    assert "file download  by op-alice  " + str(root / "a.txt") in log_text
    assert "refused: " in log_text


def test_a_failing_record_does_not_hide_the_result(tmp_path, tree, mode, caplog):
    root, _ = tree
    ctx = make_ctx(tmp_path, [root])

    def broken_report(*args, **kwargs):
        raise OSError("disk full")

    ctx.report = broken_report
    assert run(ctx, "files.download", path="a.txt")["data"] == b"alpha"
    assert "could not keep the record of file download" in caplog.text
