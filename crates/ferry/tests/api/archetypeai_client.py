"""Drives ferry with the official Archetype Python client a user installs
today (archetypeai 26.10.14.0 from PyPI), the way its documentation shows.
Run by clients.rs: python archetypeai_client.py STAGE API_URL API_KEY WORK_DIR.
Each stage prints what it saw; any surprise raises, and the exit code says so.
"""

import base64
import hashlib
import os
import sys
import threading

from archetypeai.api_client import ApiError, ArchetypeAI
from archetypeai._direct_upload import _initiate_upload

stage, api_url, api_key, work = sys.argv[1:5]
client = ArchetypeAI(api_key, api_endpoint=api_url)
files = client.files
MIB = 1024 * 1024


def write(name, size, seed):
    """A file of `size` pseudo-random bytes; its path."""
    path = os.path.join(work, name)
    with open(path, "wb") as out:
        block = hashlib.sha256(seed.encode()).digest() * (MIB // 32)
        while size > 0:
            out.write(block[:size])
            size -= len(block)
    return path


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def downloaded_equals(name, path):
    out = os.path.join(work, "downloaded-" + name)
    assert files.local.download(name, out), name
    assert sha256(out) == sha256(path), name


def crash_mid_upload():
    """The first session of a direct upload, killed after some parts are
    checkpointed: it exits at once, without the client's own abort."""
    path = write("resumed.mp4", 6 * 8 * MIB + 12345, "resumed")

    def progress(done, total, done_bytes, total_bytes):
        if done < 3:
            return
        # The client checkpoints each part in the background after this
        # report; once the earlier ones are on the server's books, the
        # process dies as a crash would.
        while True:
            left = _initiate_upload(files.local, path, "video/mp4", resume_if_started=True)["parts"]
            if len(left) <= total - (done - 1):
                print(f"crashed with {total - len(left)} of {total} parts checkpointed", flush=True)
                os._exit(9)

    files.local.upload(path, use_proxy=False, max_workers=2, on_progress=progress)
    raise AssertionError("the upload finished before it could crash")


def after_crash():
    path = os.path.join(work, "resumed.mp4")
    calls = []
    result = files.local.upload(
        path, use_proxy=False, max_workers=8, allow_resume=True,
        on_progress=lambda *args: calls.append(args),
    )
    assert result["file_id"] == "resumed.mp4", result
    done_before, total = calls[0][0], calls[0][1]
    # Resumed: the first report counts the parts of the first session, and
    # only the missing parts were sent (one report each).
    assert done_before >= 2 and len(calls) == 1 + (total - done_before), calls
    assert calls[-1][0] == total and calls[-1][2] == calls[-1][3] == os.path.getsize(path), calls
    downloaded_equals("resumed.mp4", path)
    print(f"resumed: {done_before} of {total} parts kept, {total - done_before} sent")


def everything_else():
    # Through the proxy, and base64.
    small = os.path.join(work, "small.csv")
    with open(small, "w") as out:
        out.write("t,x\n" + "".join(f"{i},{i * i}\n" for i in range(300)))
    assert files.local.upload(small)["file_id"] == "small.csv"
    encoded = base64.b64encode(b"t,x\n1,2\n").decode()
    assert files.local.upload("encoded.csv", base64_data=encoded)["file_id"] == "encoded.csv"

    # Direct, 8 workers, with progress, a report a part.
    big = write("direct.mp4", 5 * 8 * MIB + 777, "direct")
    reports = []
    result = files.local.upload(big, use_proxy=False, max_workers=8, on_progress=lambda *a: reports.append(a))
    assert result["file_id"] == "direct.mp4" and result["file_uid"].startswith("fil_"), result
    parts = reports[-1][1]
    assert parts > 1 and len(reports) == parts, reports
    assert reports[-1] == (parts, parts, os.path.getsize(big), os.path.getsize(big)), reports
    downloaded_equals("direct.mp4", big)
    downloaded_equals("small.csv", small)

    # Cancelled: the client aborts its upload; a new one with resume
    # allowed starts over and lands.
    cancel = threading.Event()
    cancelled = write("cancelled.mp4", 4 * 8 * MIB, "cancelled")
    try:
        files.local.upload(cancelled, use_proxy=False, max_workers=1, cancel_event=cancel,
                           on_progress=lambda *a: cancel.set())
        raise AssertionError("a cancelled upload finished")
    except ValueError as e:
        assert "cancelled" in str(e), e
    again = _initiate_upload(files.local, cancelled, "video/mp4", resume_if_started=True)
    assert not again["is_resume"], "the cancelled upload was not aborted"
    assert files.local.upload(cancelled, use_proxy=False, allow_resume=True)["file_id"] == "cancelled.mp4"
    downloaded_equals("cancelled.mp4", cancelled)

    # Metadata: one file, a page, every page, and back.
    record = files.get_metadata(file_id="direct.mp4")
    assert record["num_bytes"] == os.path.getsize(big) and record["file_type"] == "video/mp4", record
    for i in range(22):
        files.local.upload(write(f"many-{i:02}.txt", 10 + i, f"many{i}"))
    page = files.get_metadata()
    names = [f["file_id"] for f in page["data"]]
    assert names[0] == "many-21.txt" and page["has_more"] is False and page["prev_cursor"] is None, page
    walked = [f["file_id"] for f in files.iter_metadata(limit=10)]
    assert walked == names and len(walked) == len(set(walked)) == 22 + 4, walked
    first = files.get_metadata(limit=10)
    second = files.get_metadata(limit=10, after=first["next_cursor"])
    back = files.get_metadata(limit=10, before=second["prev_cursor"])
    # The same files (their records may have moved on: ingestion runs meanwhile).
    uids = lambda page: [f["file_uid"] for f in page["data"]]
    assert uids(back) == uids(first), (back, first)
    assert [f["file_id"] for f in second["data"]] == walked[10:20]

    info = files.get_info()
    assert info["num_files"] == 26, info
    assert info["num_bytes"] == sum(f["num_bytes"] for f in page["data"]), info

    # Delete; a second delete is the server's 404, raised as the client's error.
    assert files.local.delete("small.csv")["file_id"] == "small.csv"
    try:
        files.local.delete("small.csv")
        raise AssertionError("deleted twice")
    except ApiError as e:
        assert e.validate_error_code_exists("file_not_found"), e.errors
    assert files.get_info()["num_files"] == 25
    print("proxy, base64, direct, cancel, metadata pages, info, download and delete: as documented")


{"crash": crash_mid_upload, "resume": after_crash, "rest": everything_else}[stage]()
