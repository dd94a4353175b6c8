"""The baseline's TF-IDF features, built from prepare's tokens, against scikit-learn's from the text."""
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from imdb_lstm.text import corpus_ids, rank_words, tokenize
from stages.baseline import tfidf_features


def test_tfidf_features_equal_sklearns_tfidf_vectorizer_on_the_text():
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(40)]
    train_texts = [" ".join(rng.choice(vocabulary[:30], n)) for n in rng.integers(0, 25, 300)]
    test_texts = [" ".join(rng.choice(vocabulary, n)) for n in rng.integers(0, 25, 100)]  # with unseen words
    words, *train = rank_words(train_texts)
    test = corpus_ids(test_texts, words)
    ours = tfidf_features(train, test)

    sklearn = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2),
                              min_df=2, sublinear_tf=True)
    expected = sklearn.fit_transform(train_texts), sklearn.transform(test_texts)
    position = {word: i for i, word in enumerate(words)}

    def code(term):  # the baseline's feature code of a 1- or 2-gram
        ids = [position[word] for word in term.split()]
        return ids[0] if len(ids) == 1 else len(words) + ids[0] * len(words) + ids[1]

    in_code_order = np.argsort([code(term) for term in sklearn.get_feature_names_out()])
    assert 0 < len(in_code_order) < 30 + 30 * 30  # min_df left some 2-grams out
    for matrix, reference in zip(ours, expected):
        assert matrix.shape == reference.shape
        np.testing.assert_allclose(matrix.toarray(), reference[:, in_code_order].toarray(), rtol=1e-12, atol=1e-15)
