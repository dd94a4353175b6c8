"""fetch: the IMDB archive, verified, to data/raw/ (from the download cache when it holds a copy)."""
from pathlib import Path

from imdb_lstm.download import fetch
from imdb_lstm.errors import run_stage
from imdb_lstm.params import load_params

OUT = Path("data/raw/aclImdb_v1.tar.gz")


def main():
    data = load_params()["data"]
    fetch(data["url"], data["sha256"], OUT)


if __name__ == "__main__":
    run_stage(main)
