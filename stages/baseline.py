"""baseline: TF-IDF word 1–2-grams + logistic regression, the classical reference for the LSTM.

Reads data/raw/aclImdb_v1.tar.gz with the same tokenizer as prepare; trains on the training split
and writes metrics/baseline.json (test accuracy, F1, ROC AUC), so `dvc metrics show` puts the
two side by side.
"""
import time
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from imdb_lstm.archive import labelled_splits
from imdb_lstm.errors import run_stage
from imdb_lstm.files import write_json
from imdb_lstm.text import tokenize

ARCHIVE = Path("data/raw/aclImdb_v1.tar.gz")
C = 10.0  # inverse regularisation strength: weak regularisation suits ~440,000 sparse features


def main():
    start = time.perf_counter()
    splits = labelled_splits(ARCHIVE)
    vectorizer = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None,
                                 ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    train = vectorizer.fit_transform(splits["train"][0])
    classifier = LogisticRegression(C=C, max_iter=1000).fit(train, splits["train"][1])
    test_texts, labels = splits["test"]
    scores = classifier.predict_proba(vectorizer.transform(test_texts))[:, 1]
    predicted = (scores > 0.5).astype(int)
    metrics = {"accuracy": accuracy_score(labels, predicted), "f1": f1_score(labels, predicted),
               "roc_auc": roc_auc_score(labels, scores)}
    write_json("metrics/baseline.json", {**{k: round(float(v), 6) for k, v in metrics.items()},
                                         "features": train.shape[1]})
    print(f"baseline: TF-IDF 1-2-grams + logistic regression, test accuracy {metrics['accuracy']:.4f} "
          f"in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run_stage(main)
