"""fetch(): the cache, real downloads from a local HTTP server, and every way they fail."""
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml
from imdb_fixture import make_archive, member_info, write_archive

from imdb_lstm import archive, download
from imdb_lstm.download import OFFICIAL_SHA256, fetch
from imdb_lstm.errors import PipelineError
from imdb_lstm.files import sha256_file

REPO = Path(__file__).resolve().parent.parent
NAME = "aclImdb_v1.tar.gz"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests += 1
        self.server.respond(self)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 in a thread; a test sets server.respond(handler)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.requests, httpd.release = 0, threading.Event()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/{NAME}"
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd
    httpd.release.set()  # lets a hanging response end
    httpd.shutdown()
    httpd.server_close()


def serve(data, length=None):
    """A response with `data` as its body; a `length` above len(data) makes a cut connection."""
    def respond(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(length or len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    return respond


def hang(handler):
    handler.server.release.wait(10)


def fail_then_serve(code, failures, data):
    def respond(handler):
        if handler.server.requests <= failures:
            handler.send_error(code)
        else:
            serve(data)(handler)
    return respond


@pytest.fixture(autouse=True)
def fast_network(monkeypatch, tmp_path):
    """A private cache, one retry without waiting, and a short timeout: every test stays under 5 s."""
    monkeypatch.setenv("IMDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "TIMEOUT_S", 0.5)
    monkeypatch.setattr(download, "RETRIES", 1)
    monkeypatch.setattr(download, "BACKOFF_S", 0)


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "served" / NAME
    path.parent.mkdir()
    make_archive(path, n_per_class=5, n_unsup=3)
    return path


@pytest.fixture
def tiny_is_imdb(monkeypatch, tiny):
    """Make the tiny archive's content what IMDB v1.0's must be, as the repack's is for the real one."""
    counts, digest = archive.fingerprint(tiny)
    monkeypatch.setattr(archive, "IMDB_COUNTS", counts)
    monkeypatch.setattr(archive, "IMDB_FINGERPRINT", digest)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def out(tmp_path):
    return tmp_path / "data" / "raw" / NAME


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/{NAME}"


def assert_nothing_left(cache, out, kept=()):
    """No partial download in the cache (only the files in `kept`) and nothing at or beside `out`."""
    assert sorted(p.name for p in cache.glob("*")) == sorted(kept)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


# --- downloads -------------------------------------------------------------------------------

def test_download_is_verified_cached_and_copied(server, tiny, cache, out, capsys):
    server.respond = serve(tiny.read_bytes())
    fetch(server.url, sha256_file(tiny), out)
    assert out.read_bytes() == tiny.read_bytes() == (cache / NAME).read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == [NAME]
    printed = capsys.readouterr()
    assert printed.out == f"fetch: downloaded {server.url} (0.0 MB, sha256 ok)\n"
    assert printed.err == "", "no progress bar redraws when stderr is not a terminal (a log)"

    out.unlink()
    fetch(server.url, sha256_file(tiny), out)  # now from the cache, without a request
    assert server.requests == 1 and out.read_bytes() == tiny.read_bytes()
    assert capsys.readouterr().out == f"fetch: using verified local copy {cache / NAME} (sha256 ok)\n"


def test_a_download_without_a_length_is_read_to_its_end(server, tiny, out):
    def close_delimited(handler):  # HTTP/1.0: the body ends when the server closes the connection
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(tiny.read_bytes())
    server.respond = close_delimited
    fetch(server.url, sha256_file(tiny), out)
    assert out.read_bytes() == tiny.read_bytes()


def test_file_url_works(tiny, cache, out, capsys):
    fetch(tiny.as_uri(), sha256_file(tiny), out)
    assert out.read_bytes() == tiny.read_bytes() == (cache / NAME).read_bytes()
    assert "fetch: downloaded file://" in capsys.readouterr().out


def test_server_error_is_retried(server, tiny, out, capsys):
    server.respond = fail_then_serve(500, failures=1, data=tiny.read_bytes())  # 500: the lowest server error
    fetch(server.url, sha256_file(tiny), out)
    assert server.requests == 2 and out.read_bytes() == tiny.read_bytes()
    assert "HTTP 500" in capsys.readouterr().err


def test_retries_wait_longer_each_time_then_say_how_many_tries_failed(server, tiny, cache, out, capsys,
                                                                        monkeypatch):
    monkeypatch.setattr(download, "RETRIES", 3)
    monkeypatch.setattr(download, "BACKOFF_S", 0.05)
    waits = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    server.respond = lambda handler: handler.send_error(503)
    with pytest.raises(PipelineError, match=r"download of .* failed after 4 tries: server error HTTP 503"):
        fetch(server.url, sha256_file(tiny), out)
    assert server.requests == 4 and waits == [0.05, 0.1, 0.2]
    err = capsys.readouterr().err
    assert "try 2 of 4 in 0.05 s" in err and "try 4 of 4 in 0.2 s" in err
    assert_nothing_left(cache, out)


def test_not_found_is_not_retried(server, tiny, cache, out):
    for code, reason, wrong in [(404, "Not Found", "the URL is wrong: "), (403, "Forbidden", "")]:
        server.respond = lambda handler: handler.send_error(code)
        with pytest.raises(PipelineError) as refused:
            fetch(server.url, sha256_file(tiny), out)
        assert str(refused.value) == (f"{server.url}: HTTP {code} {reason}; {wrong}set data.url in params.yaml to the "
                                      "archive's address")
    assert server.requests == 2, "one request each"
    assert_nothing_left(cache, out)


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/aclImdb_v1.tar.gz"])  # urllib refuses file:// itself
def test_a_redirect_to_a_scheme_data_url_refuses_is_not_followed(server, tiny, cache, out, target):
    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.end_headers()
    server.respond = redirect
    with pytest.raises(PipelineError) as refused:
        fetch(server.url, sha256_file(tiny), out)
    assert str(refused.value) == (f"{server.url} redirects to a ftp:// address, which is not accepted: set data.url "
                                  "in params.yaml to the archive's http(s) address")
    assert_nothing_left(cache, out)


def test_a_redirect_to_http_is_followed_and_one_to_https_tried(server, tiny, cache, out):
    data, https = tiny.read_bytes(), closed_port_url().replace("http://", "https://")

    def redirect_once(handler):
        if handler.path == "/moved/" + NAME:
            serve(data)(handler)
        else:
            handler.send_response(301)
            handler.send_header("Location", https if handler.server.requests > 1 else "/moved/" + NAME)
            handler.end_headers()
    server.respond = redirect_once
    fetch(server.url, sha256_file(tiny), out)
    assert out.read_bytes() == data and server.requests == 2
    out.unlink(), (cache / NAME).unlink()
    with pytest.raises(PipelineError, match=r"failed after 2 tries: connection failed"):  # followed, no server there
        fetch(server.url, sha256_file(tiny), out)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_cache_entry_that_is_not_a_regular_file_is_refused(tiny, cache, out, kind):
    cache.mkdir()
    (cache / NAME).mkdir() if kind == "folder" else os.mkfifo(cache / NAME)
    with pytest.raises(PipelineError) as refused:
        fetch("https://example.org/" + NAME, sha256_file(tiny), out)
    assert str(refused.value) == (f"{cache / NAME} is in the download cache but is not a regular file: move it away, "
                                  "or set IMDB_CACHE_DIR to a folder that holds the archive")


def test_missing_file_url(tmp_path, cache, out):
    with pytest.raises(PipelineError) as refused:
        fetch((tmp_path / NAME).as_uri(), OFFICIAL_SHA256, out)
    assert str(refused.value) == (f"cannot read {(tmp_path / NAME).as_uri()} ([Errno 2] No such file or directory: "
                                  f"'{tmp_path / NAME}'): set data.url in params.yaml to the archive's path")
    assert_nothing_left(cache, out)


@pytest.mark.parametrize("url", ["https://example.org", "https://example.org/data/", "https://example.org/data/.",
                                 "https://example.org/data/.."])
def test_a_url_without_a_file_name_is_refused(cache, out, url):
    with pytest.raises(PipelineError) as refused:
        fetch(url, OFFICIAL_SHA256, out)
    assert str(refused.value) == f"data.url {url!r} must end with the archive's file name"


@pytest.mark.parametrize("last", ["a%00b.tar.gz", "x" * 235 + ".tar.gz"])
def test_a_url_whose_file_name_no_file_system_takes_is_refused(cache, out, last):
    url = f"https://example.org/data/{last}"
    with pytest.raises(PipelineError) as refused:
        fetch(url, OFFICIAL_SHA256, out)
    name = urllib.parse.unquote(last)
    assert str(refused.value) == (f"data.url {url!r} ends with {name!r}, which cannot be a file name: use a URL "
                                  "whose last part is the archive's name, such as aclImdb_v1.tar.gz")
    assert_nothing_left(cache, out)


def test_a_url_ending_in_the_longest_name_the_cache_can_write_is_fetched(tmp_path, cache, out):
    source = tmp_path / ("x" * 234 + ".tar.gz")
    fetch(source.as_uri(), make_archive(source), out)
    assert out.read_bytes() == source.read_bytes() == (cache / source.name).read_bytes()


def test_the_cache_is_in_the_home_folder_unless_imdb_cache_dir_says_where(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for value in (None, ""):  # unset or empty: the default
        if value is None:
            monkeypatch.delenv("IMDB_CACHE_DIR")
        else:
            monkeypatch.setenv("IMDB_CACHE_DIR", value)
        assert download.cache_dir() == tmp_path / ".cache" / "imdb_lstm"
    monkeypatch.setenv("IMDB_CACHE_DIR", "~/imdb")
    assert download.cache_dir() == tmp_path / "imdb"


def test_hanging_server_times_out(server, tiny, cache, out):
    server.respond = hang
    start = time.monotonic()
    with pytest.raises(PipelineError, match=r"failed after 2 tries: no data for 0\.5 s \(the server hangs\)"):
        fetch(server.url, sha256_file(tiny), out)
    assert time.monotonic() - start < 5 and server.requests == 2
    assert_nothing_left(cache, out)


def test_cut_connection_is_detected(server, tiny, cache, out):
    data = tiny.read_bytes()
    server.respond = serve(data[:1000], length=len(data))
    with pytest.raises(PipelineError, match=f"connection cut after 1,000 of {len(data):,} bytes"):
        fetch(server.url, sha256_file(tiny), out)
    assert server.requests == 2
    assert_nothing_left(cache, out)


def test_checksum_mismatch(server, tiny, tmp_path, cache, out):
    other = tmp_path / "other.tar.gz"
    make_archive(other, 5, 3, seed=1)
    server.respond = serve(other.read_bytes())
    with pytest.raises(PipelineError, match="checksum mismatch") as error:
        fetch(server.url, sha256_file(tiny), out)
    assert str(error.value) == (f"checksum mismatch for {server.url}: expected sha256 {sha256_file(tiny)}, got sha256 "
                                f"{sha256_file(other)}. Check data.url and data.sha256 in params.yaml")
    assert_nothing_left(cache, out)


def test_no_network_says_how_to_use_a_local_copy(cache, out):
    with pytest.raises(PipelineError, match="Connection refused") as error:
        fetch(closed_port_url(), OFFICIAL_SHA256, out)
    assert f"put {NAME} in {cache} or set IMDB_CACHE_DIR" in str(error.value)
    assert_nothing_left(cache, out)


def test_download_of_a_repack_is_accepted_by_content(tiny, tiny_is_imdb, out, capsys):
    fetch(tiny.as_uri(), OFFICIAL_SHA256, out)
    assert out.read_bytes() == tiny.read_bytes()
    assert "(0.0 MB, content matches IMDB v1.0)" in capsys.readouterr().out


# --- the cache --------------------------------------------------------------------------------

def put_in_cache(cache, data):
    cache.mkdir()
    (cache / NAME).write_bytes(data)


def test_cached_copy_is_accepted_by_sha256(tiny, cache, out, capsys):
    put_in_cache(cache, tiny.read_bytes())
    fetch(closed_port_url(), sha256_file(tiny), out)
    assert out.read_bytes() == tiny.read_bytes()
    assert capsys.readouterr().out == f"fetch: using verified local copy {cache / NAME} (sha256 ok)\n"


def test_cached_repack_is_accepted_by_content(tiny, tiny_is_imdb, cache, out, capsys):
    put_in_cache(cache, tiny.read_bytes())
    fetch(closed_port_url(), OFFICIAL_SHA256, out)
    assert out.read_bytes() == tiny.read_bytes()
    assert capsys.readouterr().out == \
        f"fetch: using verified local copy {cache / NAME} (content matches IMDB v1.0)\n"


def test_cached_other_archive_is_refused_and_kept(tiny, tmp_path, cache, out):
    other = tmp_path / "other.tar.gz"
    make_archive(other, 5, 3, seed=1)
    put_in_cache(cache, other.read_bytes())
    with pytest.raises(PipelineError, match="Remove it to download it again") as error:
        fetch(closed_port_url(), sha256_file(tiny), out)
    assert f"cached copy {cache / NAME} is not the archive" in str(error.value)
    assert f"expected sha256 {sha256_file(tiny)}, found sha256 {sha256_file(other)}" in str(error.value)
    assert_nothing_left(cache, out, kept=[NAME])


@pytest.mark.parametrize("content, found", [
    ("non-IMDB", "reviews per folder {'train/pos': 0"),
    ("other reviews", "reviews per folder {'train/pos': 5, 'train/neg': 5, 'test/pos': 5, 'test/neg': 5, "
                      "'train/unsup': 3}, content fingerprint "),
    ("not gzip", "Not a gzipped file"),
    ("unsafe", "unsafe member '../x'"),
])
def test_cached_copy_with_other_content_is_refused(tiny, tiny_is_imdb, tmp_path, cache, out, content, found):
    bad = tmp_path / "bad.tar.gz"
    if content == "non-IMDB":
        write_archive(bad, [(member_info("photos/cat.txt", size=4), b"meow")])
    elif content == "other reviews":  # as many per folder as IMDB's (here the tiny one's), other texts
        make_archive(bad, 5, 3, seed=1)
    elif content == "not gzip":
        bad.write_bytes(b"<html>Not found</html>")
    else:
        make_archive(bad, 5, 3, extra_members=[(member_info("../x", size=1), b"x")])
    put_in_cache(cache, bad.read_bytes())
    with pytest.raises(PipelineError, match=f"expected sha256 {OFFICIAL_SHA256} or the reviews of IMDB v1.0") as error:
        fetch(closed_port_url(), OFFICIAL_SHA256, out)
    assert found in str(error.value) and "set IMDB_CACHE_DIR" in str(error.value)
    assert_nothing_left(cache, out, kept=[NAME])


# --- the stage --------------------------------------------------------------------------------

def run_fetch_stage(workdir, url, sha256):
    """`python -m stages.fetch` in `workdir`, with the repository's params.yaml pointed at `url`."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(url=url, sha256=sha256)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=60)


def test_stage_writes_the_archive(tiny, tmp_path):
    done = run_fetch_stage(tmp_path, tiny.as_uri(), sha256_file(tiny))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data/raw" / NAME).read_bytes() == tiny.read_bytes()
    assert done.stdout.startswith("fetch: downloaded file://")


def test_stage_reports_one_error_line(tmp_path, cache):
    done = run_fetch_stage(tmp_path, (tmp_path / "nowhere" / NAME).as_uri(), OFFICIAL_SHA256)
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot read file://") and done.stderr.count("\n") == 1
    assert_nothing_left(cache, tmp_path / "data/raw" / NAME)
