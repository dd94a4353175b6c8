"""Get a verified IMDB archive: from the download cache when it holds one, else from data.url."""
import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from imdb_lstm import archive
from imdb_lstm.errors import PipelineError
from imdb_lstm.files import atomic_path, sha256_file
from imdb_lstm.progress import bar

# aclImdb_v1.tar.gz as ai.stanford.edu serves it: 84,125,825 bytes.
OFFICIAL_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
TIMEOUT_S = 30  # seconds without data before a download counts as hung
RETRIES = 3  # further tries after a timeout, a cut connection or a server error
BACKOFF_S = 2  # wait before the first retry; it doubles each time
CHUNK = 1 << 20


class _Retryable(Exception):
    """A failure that a later try may not meet: timeout, cut or refused connection, HTTP 5xx."""


def cache_dir():
    """The download cache: $IMDB_CACHE_DIR if set, else ~/.cache/imdb_lstm.

    Like Keras's ~/.keras/datasets it keeps downloads across runs and clones. To work offline,
    put aclImdb_v1.tar.gz (the official file or a repack of it) there, or point IMDB_CACHE_DIR
    at the folder that holds it.
    """
    return Path(os.environ.get("IMDB_CACHE_DIR") or Path.home() / ".cache" / "imdb_lstm").expanduser()


def fetch(url, sha256, out):
    """Copy the archive that `sha256` names to `out`: the cached copy if any, else download it into the cache."""
    cached = cache_dir() / _file_name(url)
    if cached.exists() and not cached.is_file():  # a folder, a fifo (which would block a read forever), a device
        raise PipelineError(f"{cached} is in the download cache but is not a regular file: move it away, or set "
                            "IMDB_CACHE_DIR to a folder that holds the archive")
    if cached.exists():
        summary = f"using verified local copy {cached} ({_check_cached(cached, sha256)})"
    else:
        summary = _download_to_cache(url, sha256, cached)
    with atomic_path(out) as tmp:
        shutil.copyfile(cached, tmp)
    print(f"fetch: {summary}")


def _file_name(url):
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rsplit("/", 1)[-1]
    if name in ("", ".", ".."):
        raise PipelineError(f"data.url {url!r} must end with the archive's file name")
    # the name becomes a file in the cache, written first as ".NAME.XXXXXXXX.tmp": no file system takes
    # a NUL byte or a name over 255 bytes
    if "\0" in name or len(name.encode("utf-8", "surrogateescape")) > 255 - len("..XXXXXXXX.tmp"):
        raise PipelineError(f"data.url {url!r} ends with {name!r}, which cannot be a file name: use a URL "
                            "whose last part is the archive's name, such as aclImdb_v1.tar.gz")
    return name


def _identify(path, sha256):
    """(how it matched, None) if `path` is the archive `sha256` names, else (None, what was found)."""
    got = sha256_file(path)
    if got == sha256:
        return "sha256 ok", None
    if sha256 != OFFICIAL_SHA256:
        return None, f"sha256 {got}"
    # Another packing of IMDB v1.0 (such as one without the .feat files) holds the same reviews and labels.
    try:
        counts, digest = archive.fingerprint(path)
    except PipelineError as error:
        return None, f"sha256 {got}, and {error}"
    if counts == archive.IMDB_COUNTS and digest == archive.IMDB_FINGERPRINT:
        return "content matches IMDB v1.0", None
    return None, f"sha256 {got}, reviews per folder {counts}, content fingerprint {digest}"


def _expected(sha256):
    repack = " or the reviews of IMDB v1.0" if sha256 == OFFICIAL_SHA256 else ""
    return f"sha256 {sha256}{repack}"


def _check_cached(cached, sha256):
    how, found = _identify(cached, sha256)
    if how is None:
        # The file may be the user's own: report it rather than download over it.
        raise PipelineError(
            f"cached copy {cached} is not the archive params.yaml names: expected {_expected(sha256)}, "
            f"found {found}. Remove it to download it again, or set IMDB_CACHE_DIR to a folder with the right file")
    return how


def _download_to_cache(url, sha256, cached):
    with atomic_path(cached) as tmp:
        _download(url, tmp)
        how, found = _identify(tmp, sha256)
        if how is None:
            raise PipelineError(
                f"checksum mismatch for {url}: expected {_expected(sha256)}, got {found}. "
                "Check data.url and data.sha256 in params.yaml")
        size = tmp.stat().st_size
    return f"downloaded {url} ({size / 1e6:.1f} MB, {how})"


def _download(url, dest):
    """Download `url` to `dest`, trying again, after a growing wait, when the failure may pass."""
    problem = None  # the last attempt's failure
    for attempt in range(RETRIES + 1):
        if attempt:
            wait = BACKOFF_S * 2 ** (attempt - 1)
            print(f"fetch: {problem}; try {attempt + 1} of {RETRIES + 1} in {wait:g} s", file=sys.stderr)
            time.sleep(wait)
        try:
            return _download_once(url, dest)
        except _Retryable as error:
            problem = error
    raise PipelineError(
        f"download of {url} failed after {RETRIES + 1} tries: {problem}. If this machine is offline, "
        f"put {_file_name(url)} in {cache_dir()} or set IMDB_CACHE_DIR to the folder that holds it")


class _SameSchemesRedirect(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to http(s): urllib would also follow one to ftp://, which data.url refuses."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme
        if scheme not in ("http", "https"):
            raise PipelineError(f"{req.full_url} redirects to a {scheme}:// address, which is not accepted: "
                                "set data.url in params.yaml to the archive's http(s) address")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_SameSchemesRedirect)


def _download_once(url, dest):
    try:
        with _opener.open(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as f:
            total = _content_length(response)
            with bar(total=total, unit="B", unit_scale=True, desc=f"fetch {_file_name(url)}") as progress:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    progress.update(len(chunk))
            received = f.tell()
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise _Retryable(f"server error HTTP {error.code} {error.reason}") from None
        wrong = "the URL is wrong: " if error.code == 404 else ""
        raise PipelineError(f"{url}: HTTP {error.code} {error.reason}; {wrong}set data.url in params.yaml "
                            "to the archive's address") from None
    except urllib.error.URLError as error:
        if urllib.parse.urlsplit(url).scheme == "file":
            raise PipelineError(f"cannot read {url} ({error.reason}): set data.url in params.yaml "
                                "to the archive's path") from None
        raise _Retryable(_describe(error.reason)) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise _Retryable(_describe(error)) from None
    if total is not None and received != total:
        raise _Retryable(f"connection cut after {received:,} of {total:,} bytes")


def _content_length(response):
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _describe(error):
    if isinstance(error, TimeoutError):
        return f"no data for {TIMEOUT_S} s (the server hangs)"
    return f"connection failed ({error})"
