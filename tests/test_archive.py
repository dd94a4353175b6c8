"""Streaming reads of the IMDB archive: reviews, fingerprint, and refusal of unsafe or damaged files."""
import gzip
import hashlib
import io
import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from conftest import ROOT
from helpers import PRINT_PEAK_MB
from imdb_fixture import make_archive, member_info, write_archive

from imdb_lstm import archive
from imdb_lstm.archive import Review, fingerprint, iter_reviews
from imdb_lstm.errors import PipelineError


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "aclImdb_v1.tar.gz"
    make_archive(path, n_per_class=5, n_unsup=3)
    return path


def members_of(path):
    """The (TarInfo, bytes) pairs of a fixture archive, to rewrite it."""
    with tarfile.open(path, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def test_reviews_in_archive_order_with_labels_from_their_folder(tiny):
    reviews = list(iter_reviews(tiny))
    assert len(reviews) == 20
    assert all(isinstance(r, Review) and isinstance(r.text, str) and r.text.strip() for r in reviews)
    assert [r.split for r in reviews] == ["test"] * 10 + ["train"] * 10  # the fixture's sorted member order
    for review in reviews:
        assert review.label == (1 if review.rating >= 7 else 0)
        assert review.rating in (*range(1, 5), *range(7, 11))
    assert "<br /><br />" in reviews[0].text


def test_unsup_reviews_only_on_request(tiny):
    unsup = [r for r in iter_reviews(tiny, include_unsup=True) if r.label == -1]
    assert [(r.split, r.rating) for r in unsup] == [("train", 0)] * 3
    assert sorted(r.id for r in unsup) == [0, 1, 2]


def test_fixture_is_reproducible(tmp_path):
    assert make_archive(tmp_path / "a.tar.gz") == make_archive(tmp_path / "b.tar.gz")
    assert make_archive(tmp_path / "c.tar.gz", seed=1) != make_archive(tmp_path / "a.tar.gz")


def test_fingerprint_counts_reviews_per_folder(tiny):
    counts, digest = fingerprint(tiny)
    assert counts == {"train/pos": 5, "train/neg": 5, "test/pos": 5, "test/neg": 5, "train/unsup": 3}
    # the digest is IMDB_FINGERPRINT's definition: sha256 over the sorted "<review path> <sha256 of its bytes>" lines
    lines = sorted(f"{member.name} {hashlib.sha256(data).hexdigest()}\n" for member, data in members_of(tiny)
                   if re.fullmatch(r"aclImdb/(train|test)/(pos|neg|unsup)/\d+_\d+\.txt", member.name))
    assert digest == hashlib.sha256("".join(lines).encode()).hexdigest()


def test_fingerprint_ignores_member_order_and_other_files(tiny, tmp_path):
    # Like the official archive and its repack: same reviews, other order, extra .feat files.
    members = members_of(tiny)[::-1] + [(member_info("aclImdb/train/labeledBow.feat", size=4), b"0 0\n")]
    write_archive(tmp_path / "repack.tar.gz", members)
    assert fingerprint(tmp_path / "repack.tar.gz") == fingerprint(tiny)


def test_fingerprint_covers_labels_and_texts(tiny, tmp_path):
    members = members_of(tiny)
    index = next(i for i, (info, _) in enumerate(members) if "/test/pos/" in info.name)
    info, data = members[index]
    relabelled, edited = list(members), list(members)
    relabelled[index] = (member_info(info.name.replace("/pos/", "/neg/"), size=len(data)), data)
    edited[index] = (info, data.replace(b".", b"!"))
    write_archive(tmp_path / "relabelled.tar.gz", relabelled)
    write_archive(tmp_path / "edited.tar.gz", edited)
    counts, digest = fingerprint(tiny)
    relabelled_counts, relabelled_digest = fingerprint(tmp_path / "relabelled.tar.gz")
    assert relabelled_counts == {**counts, "test/pos": 4, "test/neg": 6} and relabelled_digest != digest
    edited_counts, edited_digest = fingerprint(tmp_path / "edited.tar.gz")
    assert edited_counts == counts and edited_digest != digest


def test_non_imdb_archive_has_no_reviews(tmp_path):
    path = tmp_path / "other.tar.gz"
    write_archive(path, [(member_info("photos/cat.txt", size=4), b"meow")])
    assert fingerprint(path)[0] == dict.fromkeys(["train/pos", "train/neg", "test/pos", "test/neg", "train/unsup"], 0)
    assert list(iter_reviews(path)) == []


@pytest.mark.parametrize("info, data, problem", [
    (member_info("../x", size=3), b"bad", "an absolute path or a '..' component"),
    (member_info("/abs/x", size=3), b"bad", "an absolute path or a '..' component"),
    (member_info("aclImdb/x/../../y", size=3), b"bad", "an absolute path or a '..' component"),
    (member_info("aclImdb/train/pos/900_9.txt", tarfile.SYMTYPE, linkname="/etc/passwd"), None,
     "a link to '/etc/passwd'"),
    (member_info("aclImdb/train/pos/901_9.txt", tarfile.LNKTYPE, linkname="aclImdb/README"), None,
     "a link to 'aclImdb/README'"),
    (member_info("aclImdb/fifo", tarfile.FIFOTYPE), None, "a device or fifo"),
    (member_info("aclImdb/tty", tarfile.CHRTYPE), None, "a device or fifo"),
    (member_info("aclImdb/odd", b"V"), None, "an unknown member type b'V'"),
    (member_info("aclImdb/README", size=5), b"again", "a second copy of a member, which would replace the first"),
])
def test_unsafe_member_is_refused(tmp_path, info, data, problem):
    path = tmp_path / "bad.tar.gz"
    make_archive(path, n_per_class=2, n_unsup=1, extra_members=[(info, data)])
    with pytest.raises(PipelineError, match="unsafe member") as error:
        list(iter_reviews(path))
    assert str(error.value).startswith(f"{path}: unsafe member {info.name!r} ({problem}) refused: ")
    assert "set both to the official" in str(error.value)
    with pytest.raises(PipelineError, match="unsafe member") as error:
        fingerprint(path)  # a copy in the download cache, not yet accepted
    assert "download it again" in str(error.value)


@pytest.mark.parametrize("data, problem", [(b"caf\xe9 \xff", "not valid UTF-8"), (b" \n\t ", "is empty")])
def test_invalid_review_is_refused(tmp_path, data, problem):
    path = tmp_path / "bad.tar.gz"
    name = "aclImdb/test/neg/777_1.txt"
    make_archive(path, n_per_class=2, n_unsup=1, extra_members=[(member_info(name, size=len(data)), data)])
    for read in (iter_reviews, fingerprint):
        with pytest.raises(PipelineError, match=problem) as error:
            list(read(path))
        assert str(path) in str(error.value) and name in str(error.value)


def damaged(tiny, how):
    data = tiny.read_bytes()
    return {"truncated": data[: len(data) // 2],
            "trailer cut": data[:-4],  # every member readable, only gzip's CRC and length missing
            "bit flip": data[:200] + bytes([data[200] ^ 0xFF]) + data[201:],
            "not gzip": b"<html>Service unavailable</html>\n" * 20,
            "not tar": gzip.compress(b"not a tar archive\n" * 100, mtime=0),
            "empty": b""}[how]


@pytest.mark.parametrize("how", ["truncated", "trailer cut", "bit flip", "not gzip", "not tar", "empty"])
def test_damaged_archive_is_refused(tiny, how):
    tiny.write_bytes(damaged(tiny, how))
    with pytest.raises(PipelineError, match="cannot read .* as a .tar.gz archive") as error:
        list(iter_reviews(tiny))
    assert str(tiny) in str(error.value) and "params.yaml names a damaged or non-IMDB archive" in str(error.value)


def test_a_cut_trailer_is_caught_after_a_tar_end_far_from_it(tiny):
    """The tar's end marker comes before the gzip stream's end: the reader reads on to check the trailer,
    here past its 1 MB buffer of zero blocks."""
    plain = gzip.decompress(tiny.read_bytes()) + bytes(3 << 20)
    tiny.write_bytes(gzip.compress(plain, mtime=0)[:-4])
    with pytest.raises(PipelineError, match="cannot read .* as a .tar.gz archive"):
        list(iter_reviews(tiny))


def test_a_review_may_be_as_long_as_the_limit_and_no_longer(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "MAX_REVIEW_BYTES", 4000)  # above the fixture's reviews
    name = "aclImdb/test/neg/777_1.txt"
    for size in (4000, 4001):
        path = tmp_path / f"{size}.tar.gz"
        make_archive(path, n_per_class=2, n_unsup=1, extra_members=[(member_info(name, size=size), b"a" * size)])
        if size == 4000:
            assert len([r for r in iter_reviews(path) if r.id == 777]) == 1
        else:
            with pytest.raises(PipelineError) as refused:
                list(iter_reviews(path))
            assert str(refused.value).startswith(f"{path}: member '{name}' holds 4,001 bytes, more than any review "
                                                 "(at most 4,000)")


def test_sizes_are_counts_of_bytes():
    from imdb_lstm.archive import _size
    assert _size(b"00000001750\0") == 0o1750 and _size("1234") == 1234
    for value, message in [(b"\xff" * 12, "a member of negative size (-1 bytes)"), ("-5", "a member of negative size "
                           "(-5 bytes)"), ("1e3 bytes", "a pax size '1e3 bytes' that is not a number")]:
        with pytest.raises(archive._NotTar) as refused:
            _size(value)
        assert str(refused.value) == message


def test_each_split_sorted_by_label_and_id_and_labelled_as_arrays(tiny):
    from imdb_lstm.archive import labelled_splits, pretraining_texts, sorted_reviews, unlabelled_texts
    by_member = {(r.split, r.label, r.id): r.text for r in iter_reviews(tiny, include_unsup=True)}
    splits = sorted_reviews(tiny)
    for split in ("train", "test"):
        keys = [(split, label, review_id) for label, review_id, _ in splits[split]]
        assert keys == sorted((s, label, i) for s, label, i in by_member if s == split and label >= 0)
        assert [text for *_, text in splits[split]] == [by_member[key] for key in keys]
    with_unsup = sorted_reviews(tiny, include_unsup=True)
    assert [label for label, _, _ in with_unsup["train"]] == [-1] * 3 + [0] * 5 + [1] * 5
    assert with_unsup["test"] == splits["test"]
    assert pretraining_texts(tiny) == [text for _, _, text in with_unsup["train"]], "never the test split's"
    assert unlabelled_texts(tiny) == [text for label, _, text in with_unsup["train"] if label == -1]
    labelled = labelled_splits(tiny)
    for split in ("train", "test"):
        texts, labels = labelled[split]
        assert labels.dtype == np.int64 and labels.tolist() == [label for label, _, _ in splits[split]]
        assert texts == [text for _, _, text in splits[split]]


@pytest.mark.parametrize("drop, found", [("test/pos", "[0]"), ("test/", "no reviews")])
def test_a_split_without_both_classes_is_refused(tiny, tmp_path, drop, found):
    from imdb_lstm.archive import labelled_splits
    path = tmp_path / "one_class.tar.gz"
    write_archive(path, [(m, d) for m, d in members_of(tiny) if not m.name.startswith("aclImdb/" + drop)])
    with pytest.raises(PipelineError) as refused:
        labelled_splits(path)
    assert str(refused.value) == f"{path}: the test split needs positive and negative reviews, found {found}"


def test_missing_archive_is_reported(tmp_path):
    with pytest.raises(PipelineError, match="No such file"):
        list(iter_reviews(tmp_path / "missing.tar.gz"))


def hostile_archive(path, kind):
    """The tiny archive plus one member whose header claims far more than any review: the raw tar
    bytes are written by hand where tarfile itself would refuse to (or could not) write them."""
    tail = {
        # GNU sparse member claiming 2 GB: tarfile expands it while reading
        "sparse": _header("aclImdb/train/pos/990_9.txt", b"S", 2 << 30),
        # a review of 256 MB (of spaces: the archive stays small)
        "huge review": _header("aclImdb/train/pos/991_9.txt", b"0", 256 << 20),
        # GNU long name and pax headers claiming 1 GB: tarfile reads them whole
        "long name": _header("././@LongLink", b"L", 1 << 30) + b"a" * 4096,
        "pax": _header("./PaxHeaders/x", b"x", 1 << 30) + b"9 a=bcd\n" * 512,
        # GNU base-256 sizes may be negative: -1 would have the reader take the rest of the stream at once
        "negative size": _header("aclImdb/train/pos/992_9.txt", b"0", -1),
        "negative long name": _header("././@LongLink", b"L", -1),
        # a pax size record that is not a number
        "pax size": _header("./PaxHeaders/y", b"x", 18) + b"18 size=1e3 bytes\n".ljust(512, b"\0")
        + _header("aclImdb/train/pos/993_9.txt", b"0", 0),
    }[kind]
    make_archive(path, n_per_class=2, n_unsup=1)
    plain = gzip.decompress(path.read_bytes())
    end = len(plain.rstrip(b"\0"))
    end += -end % 512
    with gzip.GzipFile(path, "wb", mtime=0) as out:
        out.write(plain[:end] + tail)
        if kind in ("huge review", "negative size", "negative long name"):
            for _ in range(256):
                out.write(b" " * (1 << 20))
        out.write(bytes(1024))
    return path


def _header(name, type, size):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.type = 0, 0, tarfile.REGTYPE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    # octal as tar writes it; a negative size as GNU's base-256 (two's complement, first byte 0xff)
    header[124:136] = f"{size:011o}\0".encode() if size >= 0 else size.to_bytes(12, "big", signed=True)
    header[156:157] = type
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    return bytes(header)


@pytest.mark.parametrize("kind, message", [("sparse", "a sparse file"), ("huge review", "more than any review"),
                                           ("long name", "extended header of 1,073,741,824 bytes"),
                                           ("pax", "extended header of 1,073,741,824 bytes"),
                                           ("negative size", "a member of negative size (-1 bytes)"),
                                           ("negative long name", "a member of negative size (-1 bytes)"),
                                           ("pax size", "a pax size '1e3 bytes' that is not a number")])
def test_members_larger_than_any_review_are_refused_in_bounded_memory(tmp_path, kind, message):
    path = hostile_archive(tmp_path / "hostile.tar.gz", kind)
    program = ("import sys\nfrom imdb_lstm.archive import fingerprint\nfrom imdb_lstm.errors import "
               "PipelineError\ntry:\n    fingerprint(sys.argv[1])\nexcept PipelineError as error:\n    print(error)\n"
               + PRINT_PEAK_MB)
    done = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    error, peak_mb = done.stdout.splitlines()
    assert message in error and str(path) in error, done.stdout + done.stderr
    assert int(peak_mb) < 200


def test_sizes_in_gnu_base_256_are_read(tiny):
    """GNU tar writes a size too large for 11 octal digits as 0x80 and the number in big-endian bytes."""
    plain = bytearray(gzip.decompress(tiny.read_bytes()))
    offset = 0
    while int(plain[offset + 124:offset + 135] or b"0", 8) == 0:  # the first member with content
        offset += 512
    header = plain[offset:offset + 512]
    size = int(header[124:135], 8)
    header[124:136] = b"\x80" + size.to_bytes(11, "big")
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    plain[offset:offset + 512] = header
    tiny.write_bytes(gzip.compress(bytes(plain), mtime=0))
    assert len(list(iter_reviews(tiny))) == 20


@pytest.mark.parametrize("checksum, readable", [("unsigned", True), ("signed", True), ("wrong", False)])
def test_header_checksums_as_tar_writers_store_them(tiny, checksum, readable):
    plain = bytearray(gzip.decompress(tiny.read_bytes()))
    header = plain[:512]
    header[265:271] = b"\x7f\x80\xe9t\xe9\0"  # a non-ASCII owner name: bytes at and above 127
    header[148:156] = b" " * 8
    unsigned = sum(header)
    stored = {"unsigned": unsigned, "signed": sum(b - 256 if b > 127 else b for b in header),
              "wrong": unsigned + 1}[checksum]
    header[148:156] = f"{stored:06o}\0 ".encode()
    plain[:512] = header
    tiny.write_bytes(gzip.compress(bytes(plain), mtime=0))
    if readable:
        assert len(list(iter_reviews(tiny))) == 20
    else:
        with pytest.raises(PipelineError) as refused:
            list(iter_reviews(tiny))
        assert str(refused.value).startswith(f"cannot read {tiny} as a .tar.gz archive (a member header with a bad "
                                             "checksum: not a tar archive, or a damaged one)")


def test_a_header_whose_checksum_needs_six_octal_digits_is_read(tmp_path):
    """Bytes above 127 all through the name and link target push the sum past 0o77777: the stored
    checksum's first digit is not 0 and counts."""
    name, target = "aclImdb/" + "\u00e9" * 44 + ".txt", "\u00ff" * 50  # 100 bytes each: 0xc3, 0xa9, 0xbf
    path = tmp_path / "high.tar.gz"
    write_archive(path, [(member_info(name, tarfile.SYMTYPE, linkname=target), None)])
    header = gzip.decompress(path.read_bytes())[:512]
    assert int(header[148:154], 8) >= 0o100000
    assert tar_members_as_read(path) == [(name, b"2", 0, target, b"")]


LONG = "aclImdb/train/unsup/" + "d" * 60 + "/" + "e" * 70 + "/0_0.txt"  # 160 bytes: past the 100 of a name field


def tar_members_as_read(path):
    """What _tar_members yields for the archive at `path`: (name, type, size, link target, bytes)."""
    with gzip.open(path, "rb") as stream:
        return [(m.name, m.type, m.size, m.linkname, m.read() if m.isfile() else b"")
                for m in archive._tar_members(stream)]


@pytest.mark.parametrize("format", ["gnu", "pax", "ustar"])
def test_members_read_as_tarfile_reads_them(tmp_path, format):
    """Long names as each format writes them (GNU long-name members, pax records, ustar's prefix field),
    long link targets, folders, empty files, and files ending on and off a block boundary."""
    kind = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}[format]
    link_target = "aclImdb/" + "t" * 120 if format != "ustar" else "aclImdb/README"  # ustar has no long links
    members = [(member_info("aclImdb", tarfile.DIRTYPE), None),
               (member_info("aclImdb/README", size=3), b"abc"),
               (member_info("aclImdb/" + "n" * 92, size=1), b"n"),  # a name that fills its 100 bytes, no NUL
               (member_info("a/" + "p" * 99, size=1), b"p"),  # ustar: a prefix of one character
               (member_info("aclImdb/empty", size=0), b""),
               (member_info("aclImdb/block", size=512), b"b" * 512),
               (member_info(LONG, size=700), bytes(range(256)) * 2 + b"x" * 188),
               (member_info("aclImdb/link", tarfile.SYMTYPE, linkname=link_target), None),
               (member_info("aclImdb/after", size=2), b"ok")]
    path = tmp_path / "formats.tar.gz"
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=kind) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    with tarfile.open(path, "r:gz") as tar:
        expected = [(m.name, m.type, m.size, m.linkname, tar.extractfile(m).read() if m.isfile() else b"")
                    for m in tar.getmembers()]
    assert tar_members_as_read(path) == expected
    assert [name for name, *_ in expected] == ["aclImdb", "aclImdb/README", "aclImdb/" + "n" * 92, "a/" + "p" * 99,
                                               "aclImdb/empty", "aclImdb/block", LONG, "aclImdb/link", "aclImdb/after"]
    assert expected[7][3] == link_target


def test_a_pax_size_overrides_the_header_and_pax_records_last_one_member(tmp_path):
    def pax(records):
        body = b"".join(records)
        return _header("./PaxHeaders/x", b"x", len(body)) + body.ljust(-len(body) % 512 + len(body), b"\0")
    blocks = (pax([b"13 size=1000\n", b"17 path=renamedX\n"]) + _header("aclImdb/original", b"0", 5)
              + b"z" * 1000 + bytes(24) + _header("aclImdb/next", b"0", 2) + b"ok".ljust(512, b"\0") + bytes(1024))
    path = tmp_path / "pax.tar.gz"
    path.write_bytes(gzip.compress(blocks, mtime=0))
    assert tar_members_as_read(path) == [("renamedX", b"0", 1000, "", b"z" * 1000),
                                         ("aclImdb/next", b"0", 2, "", b"ok")]


def test_an_extended_header_may_hold_64_kb_and_no_more(tmp_path):
    for size in (1 << 16, (1 << 16) + 1):
        name = ("aclImdb/" + "x" * size)[:size]
        blocks = _header("././@LongLink", b"L", size) + name.encode().ljust(-size % 512 + size, b"\0")
        path = tmp_path / f"{size}.tar.gz"
        path.write_bytes(gzip.compress(blocks + _header("short", b"0", 0) + bytes(1024), mtime=0))
        if size == 1 << 16:
            assert tar_members_as_read(path) == [(name, b"0", 0, "", b"")]
        else:
            with pytest.raises(archive._NotTar) as refused:
                tar_members_as_read(path)
            assert str(refused.value) == "an extended header of 65,537 bytes"


def test_a_stream_without_members_or_cut_inside_a_header_is_not_a_tar(tmp_path):
    empty = "no members: an empty or a non-tar file"
    for data, message in [(b"", empty), (bytes(1024), empty),
                          (_header("aclImdb/a", b"0", 0)[:300], "the data ends inside a member header")]:
        path = tmp_path / "odd.tar.gz"
        path.write_bytes(gzip.compress(data, mtime=0))
        with pytest.raises(archive._NotTar) as refused:
            tar_members_as_read(path)
        assert str(refused.value) == message


# --- the tar reader's field parsers, one by one -------------------------------------------------

def test_numeric_fields_read_octal_text_and_gnu_base_256():
    from imdb_lstm.archive import _number
    assert _number(b"0000644\0") == 0o644
    assert _number(b"  1750 \0\0") == 0o1750, "spaces and NULs around the digits"
    assert _number(b"\0" * 8) == 0 and _number(b"        ") == 0, "an empty field is 0"
    assert _number(b"\x80" + (5).to_bytes(11, "big")) == 5
    assert _number(b"\x80\x00\x01\x00") == 256
    assert _number(b"\xff" * 12) == -1, "0xff starts a negative number, two's complement"
    assert _number(b"\xff" + (256 ** 11 - 300).to_bytes(11, "big")) == -300
    assert _number(b"\xff\xff\xfe") == -2
    with pytest.raises(archive._NotTar) as refused:
        _number(b"12x4" + b"9" * 30)
    assert str(refused.value) == f"a header field {(b'12x4' + b'9' * 30)[:20]!r} that is not a number"


def test_pax_records_are_read_by_their_lengths():
    from imdb_lstm.archive import _pax_records
    assert _pax_records(b"") == {}
    assert _pax_records(b"11 path=ab\n16 size=1234567\n") == {"path": "ab", "size": "1234567"}
    assert _pax_records(b"14 path=a=b c\n\0\0\0\0") == {"path": "a=b c"}, "stops at the padding"
    assert _pax_records(b"13 path=\xc3\xa9t\xff\n") == {"path": "\u00e9t\udcff"}
    for bad in (b"x path=a\n", b"2 \n", b"3 a\n", b" 9 path=a\n", b"0 x=y\n", b"3 \n", b"8 path\n", b"99 path=a\n",
                b"123456789012345678901 path=a\n", b"11 path=ab\n30 size=1\n"):
        with pytest.raises(archive._NotTar, match="^a malformed pax header$"):
            _pax_records(bad)


def test_text_fields_end_at_their_first_nul_and_keep_undecodable_bytes():
    from imdb_lstm.archive import _text
    assert _text(b"aclImdb/README\0\0junk\0") == "aclImdb/README"
    assert _text(b"a\xffb") == "a\udcffb"
    assert _text(b"") == ""


def test_reading_and_skipping_stop_at_the_end_of_the_data():
    from imdb_lstm.archive import _read_exact, _skip
    stream = io.BytesIO(b"abcdef")
    assert _read_exact(stream, 2) == b"ab"
    with pytest.raises(archive._NotTar) as short:
        _read_exact(stream, 5)
    assert str(short.value) == "the data ends inside a member (4 of 5 bytes)"
    stream = io.BytesIO(bytes(3 << 20))
    _skip(stream, (2 << 20) + 5)
    assert stream.tell() == (2 << 20) + 5
    _skip(stream, 0)
    _skip(stream, -4)
    assert stream.tell() == (2 << 20) + 5, "nothing to skip"
    with pytest.raises(archive._NotTar, match="^the data ends inside a member$"):
        _skip(stream, 1 << 20)
