"""Read the IMDB archive as one stream: its 100,000 small files never touch the disk."""
import collections
import gzip
import hashlib
import re
import tarfile
import zlib

import numpy as np
from tqdm import tqdm

from imdb_lstm.errors import PipelineError

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


def iter_reviews(path, include_unsup=False):
    """Yield a Review for each labelled review (and unlabelled one if `include_unsup`), in archive order.

    Raises PipelineError, naming the archive and the member, for an unsafe member (absolute or `..`
    path, link, device), a review that is empty or not UTF-8, and a damaged or non-gzip file.
    """
    for _, _, review in _read_reviews(path, include_unsup):
        yield review


def sorted_reviews(path, include_unsup=False):
    """{"train": [...], "test": [...]}: each split's (label, id, text) triples sorted by label and id,
    whatever the archive's order (with `include_unsup`, train's unlabelled reviews come first, label -1)."""
    splits = {"train": [], "test": []}
    for review in tqdm(iter_reviews(path, include_unsup), desc="reading reviews", unit=" reviews", leave=False):
        splits[review.split].append((review.label, review.id, review.text))
    for reviews in splits.values():
        reviews.sort()  # (label, id) is unique, so texts are never compared
    return splits


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
    for name, data, review in _read_reviews(path, include_unsup=True):
        counts[f"{review.split}/{FOLDERS[review.label]}"] += 1
        lines.append(f"{name} {hashlib.sha256(data).hexdigest()}\n")
    digest = hashlib.sha256("".join(sorted(lines)).encode())
    return counts, digest.hexdigest()


def _read_reviews(path, include_unsup):
    """Yield (member name, bytes, Review); raise PipelineError for anything unsafe, damaged or invalid."""
    seen = set()
    try:
        # gzip (not tarfile's own stream) checks the CRC and length, so damage can't pass unnoticed.
        with gzip.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                _check_safe(path, member, seen)
                fields = _review_fields(member, include_unsup)
                if fields:
                    data = tar.extractfile(member).read()
                    yield member.name, data, Review(*fields, _decode(path, member.name, data))
            # The tar ends before the gzip stream does: read the rest so a cut-off trailer is caught too.
            while stream.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise PipelineError(f"cannot read {path} as a .tar.gz archive ({error}): {FIX}") from None


def _check_safe(path, member, seen):
    if member.name.startswith("/") or ".." in member.name.split("/"):
        problem = "an absolute path or a '..' component"
    elif member.issym() or member.islnk():
        problem = f"a link to {member.linkname!r}"
    elif member.isdev():
        problem = "a device or fifo"
    elif member.name in seen:
        problem = "a second copy of a member, which would replace the first"
    else:
        seen.add(member.name)
        return
    raise PipelineError(f"{path}: unsafe member {member.name!r} ({problem}) refused: {FIX}")


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
        raise PipelineError(f"{path}: review {name!r} is not valid UTF-8 ({error}): {FIX}") from None
    if not text.strip():
        raise PipelineError(f"{path}: review {name!r} is empty: {FIX}")
    return text
