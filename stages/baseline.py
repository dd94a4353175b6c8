"""baseline: TF-IDF word 1–2-grams + logistic regression, the classical reference for the LSTM.

Reads data/tokens/ (prepare's tokens of every review); trains on the training split and writes
metrics/baseline.json (test accuracy, F1, ROC AUC), so `dvc metrics show` puts the two side by side.
"""
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.preprocessing import normalize

from imdb_lstm.errors import run_stage
from imdb_lstm.files import write_json
from imdb_lstm.text import load_corpus

TOKENS = Path("data/tokens")
C = 10.0  # inverse regularisation strength: weak regularisation suits ~440,000 sparse features
MIN_REVIEWS = 2  # a 1- or 2-gram becomes a feature when at least this many training reviews have it


def ngram_counts(ids, offsets, words):
    """(review, code, count) of each word and each pair of adjacent words in a corpus of positions in a
    list of `words` words (-1, a word not in it, makes none): code w for word w, words + a·words + b for a b."""
    review = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    ids = ids.astype(np.int64)
    known = ids >= 0
    pairs = known[1:] & known[:-1] & (review[1:] == review[:-1])
    codes = np.concatenate([ids[known], words + ids[:-1][pairs] * words + ids[1:][pairs]])
    reviews = np.concatenate([review[known], review[1:][pairs]])
    span = words * (words + 1)  # codes per review: keys below sort by review, then code
    keys, counts = np.unique(reviews * span + codes, return_counts=True)
    return keys // span, keys % span, counts


def tfidf_features(train, test):
    """(train, test) TF-IDF matrices of the 1- and 2-grams in MIN_REVIEWS or more training reviews, as
    sklearn's TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True) makes them from the text
    (its columns in alphabetical order, these in code order). `train`, `test`: (ids, offsets) of prepare's
    corpus, whose word list is the training split's, so every training word has a position."""
    words = int(train[0].max()) + 1
    with ThreadPoolExecutor(2) as pool:  # numpy sorts without the GIL: both splits are counted at once
        (review, code, count), test_counted = pool.map(lambda corpus: ngram_counts(*corpus, words), (train, test))
    found, reviews = np.unique(code, return_counts=True)
    features = found[reviews >= MIN_REVIEWS]
    reviews_in_train = len(train[1]) - 1
    idf = np.log((1 + reviews_in_train) / (1 + reviews[reviews >= MIN_REVIEWS])) + 1  # sklearn's smooth idf

    def tfidf(corpus, counted):  # sublinear tf (1 + log count) × idf, each review scaled to length 1
        review, code, count = counted
        column = np.minimum(np.searchsorted(features, code), len(features) - 1)
        kept = features[column] == code
        weights = (np.log(count[kept]) + 1) * idf[column[kept]]
        matrix = csr_matrix((weights, (review[kept], column[kept])), shape=(len(corpus[1]) - 1, len(features)))
        return normalize(matrix, copy=False)

    return tfidf(train, (review, code, count)), tfidf(test, test_counted)


def main():
    start = time.perf_counter()
    (train_ids, train_offsets, train_labels), (test_ids, test_offsets, labels) = (
        load_corpus(TOKENS / f"{split}.npz") for split in ("train", "test"))
    train, test = tfidf_features((train_ids, train_offsets), (test_ids, test_offsets))
    classifier = LogisticRegression(C=C, max_iter=1000).fit(train, train_labels)
    scores = classifier.predict_proba(test)[:, 1]
    predicted = (scores > 0.5).astype(int)
    metrics = {"accuracy": accuracy_score(labels, predicted), "f1": f1_score(labels, predicted),
               "roc_auc": roc_auc_score(labels, scores)}
    write_json("metrics/baseline.json", {**{k: round(float(v), 6) for k, v in metrics.items()},
                                         "features": train.shape[1]})
    print(f"baseline: TF-IDF 1-2-grams + logistic regression, test accuracy {metrics['accuracy']:.4f} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_stage(main)
