"""Read the IMDB archive as one stream: its 100,000 small files never touch the disk."""
import collections
import gzip
import hashlib
import io
import re
import zlib

import numpy as np

from imdb_lstm.errors import PipelineError, quote
from imdb_lstm.progress import bar

Review = collections.namedtuple("Review", "split label id rating text")

# Reviews per folder in IMDB v1.0; the keys are the only folders that hold reviews.
IMDB_COUNTS = {"train/pos": 12500, "train/neg": 12500, "test/pos": 12500, "test/neg": 12500, "train/unsup": 50000}

# fingerprint() of the repack in /work/shared/imdb; the official archive holds the same reviews under the
# same paths (it only adds .feat files), so it gives the same.
IMDB_FINGERPRINT = "9011462d94a3e7fa3c30780485778657570d244bbd1b87fa6e0008ccfb0dd1dc"

LABELS = {"pos": 1, "neg": 0, "unsup": -1}
FOLDERS = {label: folder for folder, label in LABELS.items()}
REVIEW_NAME = re.compile(r"aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt")
FIX = "it is damaged or not the IMDB archive: delete it and download it again"
# data/raw is what fetch verified against params.yaml, so deleting it would bring the same file back.
FIX_VERIFIED = ("fetch accepted it for data.url and data.sha256, so params.yaml names a damaged or non-IMDB archive: "
                "set both to the official archive's")

# Bounds on what one member may make us hold: IMDB's longest review is about 14 KB, its longest path
# 40 bytes. Anything larger is refused by name before it is read.
MAX_REVIEW_BYTES = 1 << 20
MAX_HEADER_BYTES = 1 << 16  # a GNU long name or a pax header
BLOCK = 512
# tar type flags (POSIX ustar, GNU, pax) and what they are to us.
REGULAR, DIRECTORY = (b"0", b"\0", b"7"), b"5"
LONG_NAME, LONG_LINK, PAX, PAX_GLOBAL = b"L", b"K", b"x", b"g"
UNSAFE_TYPES = {b"1": "a link", b"2": "a link", b"3": "a device or fifo", b"4": "a device or fifo",
                b"6": "a device or fifo", b"S": "a sparse file"}


def iter_reviews(path, include_unsup=False):
    """Yield a Review for each labelled review (and unlabelled one if `include_unsup`), in archive order.

    Raises PipelineError, naming the archive and the member, for an unsafe member (absolute or `..`
    path, link, device), a review that is empty or not UTF-8, and a damaged or non-gzip file.
    """
    try:
        for _, _, review in _read_reviews(path, include_unsup):
            yield review
    except PipelineError as error:
        raise PipelineError(f"{error}: {FIX_VERIFIED}") from None


def sorted_reviews(path, include_unsup=False):
    """{"train": [...], "test": [...]}: each split's (label, id, text) triples sorted by label and id,
    whatever the archive's order (with `include_unsup`, train's unlabelled reviews come first, label -1)."""
    splits = {"train": [], "test": []}
    for review in bar(iterable=iter_reviews(path, include_unsup), desc="reading reviews", unit=" reviews",
                      leave=False):
        splits[review.split].append((review.label, review.id, review.text))
    for reviews in splits.values():
        reviews.sort()  # (label, id) is unique, so texts are never compared
    return splits


def pretraining_texts(path):
    """The training and unlabelled review texts (never the test split's), in a fixed order: what
    the pretrain and lm stages learn from."""
    return [text for _, _, text in sorted_reviews(path, include_unsup=True)["train"]]


def unlabelled_texts(path):
    """The 50,000 unlabelled review texts, in a fixed order: what virtual adversarial training reads."""
    return [text for label, _, text in sorted_reviews(path, include_unsup=True)["train"] if label < 0]


def labelled_splits(path):
    """{"train": (texts, labels), "test": (texts, labels)}: labels an int64 array (1 = positive), in
    sorted_reviews' order. A split without both classes is refused."""
    result = {}
    for split, reviews in sorted_reviews(path).items():
        labels = np.array([label for label, _, _ in reviews], dtype=np.int64)
        if set(labels.tolist()) != {0, 1}:
            found = sorted(set(labels.tolist())) or "no reviews"
            raise PipelineError(f"{path}: the {split} split needs positive and negative reviews, found {found}")
        result[split] = ([text for _, _, text in reviews], labels)
    return result


def fingerprint(path):
    """Return (reviews per folder, sha256 over every review's path and bytes), whatever the member order."""
    counts = dict.fromkeys(IMDB_COUNTS, 0)
    lines = []
    try:
        for name, data, review in _read_reviews(path, include_unsup=True):
            counts[f"{review.split}/{FOLDERS[review.label]}"] += 1
            lines.append(f"{name} {hashlib.sha256(data).hexdigest()}\n")
    except PipelineError as error:
        raise PipelineError(f"{error}: {FIX}") from None
    digest = hashlib.sha256("".join(sorted(lines)).encode())
    return counts, digest.hexdigest()


def _read_reviews(path, include_unsup):
    """Yield (member name, bytes, Review); raise PipelineError for anything unsafe, damaged or invalid."""
    seen = set()
    try:
        # gzip checks the CRC and length, so damage can't pass unnoticed; the buffer makes 512-byte reads cheap.
        with gzip.open(path, "rb") as compressed, io.BufferedReader(compressed, 1 << 20) as stream:
            for member in _tar_members(stream):
                _check_safe(path, member, seen)
                fields = _review_fields(member, include_unsup)
                if fields:
                    if member.size > MAX_REVIEW_BYTES:
                        raise PipelineError(f"{path}: member {quote(member.name)} holds {member.size:,} bytes, "
                                            f"more than any review (at most {MAX_REVIEW_BYTES:,})")
                    data = member.read()
                    yield member.name, data, Review(*fields, _decode(path, member.name, data))
            # The tar ends before the gzip stream does: read the rest so a cut-off trailer is caught too.
            while stream.read(1 << 20):
                pass
    except (_NotTar, EOFError, zlib.error, OSError) as error:
        raise PipelineError(f"cannot read {path} as a .tar.gz archive ({error})") from None


class _NotTar(Exception):
    """The stream is not a well-formed tar archive."""


class _Member:
    """One tar member: name, type flag, size, link target; `read()` returns its bytes (once)."""

    def __init__(self, stream, name, type, size, linkname):
        self.stream, self.name, self.type, self.size, self.linkname = stream, name, type, size, linkname
        self.unread = size

    def isfile(self):
        return self.type in REGULAR

    def read(self):
        data = _read_exact(self.stream, self.size)
        self.unread = 0
        return data


def _tar_members(stream):
    """Yield a _Member per file or folder of an uncompressed tar stream, GNU long names and pax paths
    applied. A lean reader in place of `tarfile`: it holds at most one header's worth of metadata
    (tarfile reads a long-name or pax header whole, however large it claims to be), and faster."""
    extended, count = {}, 0
    while True:
        header = stream.read(BLOCK)
        if not header or header == bytes(BLOCK):  # end of archive (an end block, or the end of the data)
            if not count:
                raise _NotTar("no members: an empty or a non-tar file")
            return
        if len(header) < BLOCK:
            raise _NotTar("the data ends inside a member header")
        _check_header(header)
        count += 1
        type, size = header[156:157], _size(header[124:136])
        if type in (LONG_NAME, LONG_LINK, PAX, PAX_GLOBAL):
            if size > MAX_HEADER_BYTES:
                raise _NotTar(f"an extended header of {size:,} bytes")
            data = _read_exact(stream, size)
            _skip(stream, -size % BLOCK)
            if type == LONG_NAME:
                extended["path"] = _text(data)
            elif type == LONG_LINK:
                extended["linkpath"] = _text(data)
            elif type == PAX:
                extended.update(_pax_records(data))
            continue
        name = _text(header[:100])
        if header[257:263] == b"ustar\0" and header[345:500].strip(b"\0"):
            name = _text(header[345:500]) + "/" + name
        member = _Member(stream, extended.pop("path", name).rstrip("/") or name,
                         type, _size(extended.pop("size", size)), extended.pop("linkpath", _text(header[157:257])))
        extended.clear()
        yield member
        _skip(stream, member.unread + (-member.size % BLOCK))


def _check_header(header):
    stored = _number(header[148:156])
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    if stored == unsigned:  # nearly always; the signed sum some old tars store costs a slow loop
        return
    if stored != unsigned - 256 * sum(b > 127 for b in header[:148] + header[156:]):  # bytes read as -128..127
        raise _NotTar("a member header with a bad checksum: not a tar archive, or a damaged one")


def _size(value):
    """A member's size from its header field (bytes) or its pax record (text): a count of bytes. A negative
    one (GNU base-256 allows it) would make the reader take the rest of the stream at once."""
    try:
        size = _number(value) if isinstance(value, bytes) else int(value)
    except ValueError:
        raise _NotTar(f"a pax size {quote(value)} that is not a number") from None
    if size < 0:
        raise _NotTar(f"a member of negative size ({size:,} bytes)")
    return size


def _number(field):
    """A numeric header field: octal text, or GNU's base-256 for large values."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[:1] == b"\xff" else value
    try:
        return int(field.strip(b" \0") or b"0", 8)
    except ValueError:
        raise _NotTar(f"a header field {field[:20]!r} that is not a number") from None


def _pax_records(data):
    """{key: value} of a pax extended header ("<length> <key>=<value>\\n" records)."""
    records, at = {}, 0
    while at < len(data) and data[at:at + 1] != b"\0":
        length = data[at:at + 20].partition(b" ")[0]
        # each record moves `at` on, and ends inside the header
        if not length.isdigit() or not len(length) + 2 <= int(length) <= len(data) - at:
            raise _NotTar("a malformed pax header")
        key, equals, value = data[at + len(length) + 1:at + int(length) - 1].partition(b"=")
        if not equals:
            raise _NotTar("a malformed pax header")
        records[_text(key)] = _text(value)
        at += int(length)
    return records


def _text(data):
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _read_exact(stream, size):
    data = stream.read(size)
    if len(data) != size:
        raise _NotTar(f"the data ends inside a member ({len(data):,} of {size:,} bytes)")
    return data


def _skip(stream, size):
    while size > 0:
        got = len(stream.read(min(size, 1 << 20)))
        if not got:
            raise _NotTar("the data ends inside a member")
        size -= got


def _check_safe(path, member, seen):
    if member.name.startswith("/") or ".." in member.name.split("/"):
        problem = "an absolute path or a '..' component"
    elif member.type in UNSAFE_TYPES:
        problem = UNSAFE_TYPES[member.type] + (f" to {quote(member.linkname)}" if member.linkname else "")
    elif not (member.isfile() or member.type == DIRECTORY):
        problem = f"an unknown member type {quote(member.type)}"
    elif member.name in seen:
        problem = "a second copy of a member, which would replace the first"
    else:
        seen.add(member.name)
        return
    raise PipelineError(f"{path}: unsafe member {quote(member.name)} ({problem}) refused")


def _review_fields(member, include_unsup):
    """(split, label, id, rating) if `member` is a review to read, else None (README, .feat, urls files...)."""
    match = REVIEW_NAME.fullmatch(member.name)
    if not (match and member.isfile()):
        return None
    split, folder, review_id, rating = match.groups()
    if f"{split}/{folder}" not in IMDB_COUNTS or (folder == "unsup" and not include_unsup):
        return None
    return split, LABELS[folder], int(review_id), int(rating)


def _decode(path, name, data):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PipelineError(f"{path}: review {name!r} is not valid UTF-8 ({error})") from None
    if not text.strip():
        raise PipelineError(f"{path}: review {name!r} is empty")
    return text
