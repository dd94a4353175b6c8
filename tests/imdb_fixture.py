"""A tiny archive in the real IMDB layout, byte-for-byte the same for a given seed."""
import gzip
import io
import random
import tarfile

from imdb_lstm.files import sha256_file

MTIME = 1306886400  # the official archive's member time (June 2011)
POSITIVE = "wonderful brilliant superb moving delightful excellent charming gripping beautiful touching".split()
NEGATIVE = "awful boring dull terrible clumsy tedious dreadful wooden pointless predictable".split()
NEUTRAL = "the film movie plot actors story scene director and was it this a of with".split()


def make_archive(path, n_per_class=100, n_unsup=20, seed=0, extra_members=None):
    """Write the archive to `path` and return its sha256.

    extra_members: (TarInfo, bytes or None) pairs added after the regular members, e.g. bad ones.
    """
    rng = random.Random(seed)
    files = {"aclImdb/README": b"Large Movie Review Dataset v1.0 (test fixture)\n",
             "aclImdb/imdb.vocab": "\n".join(POSITIVE + NEGATIVE + NEUTRAL).encode() + b"\n"}
    for split in ("train", "test"):
        for folder in ("pos", "neg"):
            files.update(_reviews(rng, split, folder, n_per_class))
    files.update(_reviews(rng, "train", "unsup", n_unsup))
    folders = {name.rsplit("/", 1)[0] for name in files}
    members = [(member_info(folder, tarfile.DIRTYPE), None) for folder in folders]
    members += [(member_info(name, size=len(data)), data) for name, data in files.items()]
    members.sort(key=lambda member: member[0].name)
    return write_archive(path, members + list(extra_members or []))


def member_info(name, type=tarfile.REGTYPE, size=0, linkname=""):
    """A TarInfo with fixed owner, mode and time, so archives are reproducible."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mtime = type, size, linkname, MTIME
    info.mode = 0o755 if type == tarfile.DIRTYPE else 0o644
    return info


def write_archive(path, members):
    """Write (TarInfo, bytes or None) pairs, in order, as a .tar.gz; return its sha256."""
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return sha256_file(path)


def _reviews(rng, split, folder, count):
    """{member name: review bytes} plus the folder's urls file, as in the real archive."""
    reviews, urls = {}, []
    for review_id in range(count):
        rating = {"pos": rng.randint(7, 10), "neg": rng.randint(1, 4), "unsup": 0}[folder]
        reviews[f"aclImdb/{split}/{folder}/{review_id}_{rating}.txt"] = _review_text(rng, folder).encode()
        urls.append(f"http://www.imdb.com/title/tt{rng.randrange(10**7):07d}/usercomments\n")
    reviews[f"aclImdb/{split}/urls_{folder}.txt"] = "".join(urls).encode()
    return reviews


def _review_text(rng, folder):
    """10-30 words: neutral filler, and sentiment words mostly of the review's own class."""
    own, other = {"pos": (POSITIVE, NEGATIVE), "neg": (NEGATIVE, POSITIVE)}.get(folder, (POSITIVE, NEGATIVE))
    if folder == "unsup" and rng.random() < 0.5:
        own, other = other, own
    words = []
    for _ in range(rng.randint(10, 30)):
        if rng.random() < 0.6:
            words.append(rng.choice(NEUTRAL))
        else:
            words.append(rng.choice(own if rng.random() < 0.85 else other))
    cut = rng.randint(3, len(words) - 3)  # a paragraph break, written as in the real reviews
    return f"{' '.join(words[:cut]).capitalize()}.<br /><br />{' '.join(words[cut:]).capitalize()}."
