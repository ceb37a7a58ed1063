"""Predictor sentence embeddings: mean-pooled over real tokens, in input order, from the same pass as predict."""

from __future__ import annotations

import numpy as np

from retrain.evaluation import Predictor


def test_embeddings_are_padding_free_in_input_order_and_match_predict(tiny_model_dir):
    predictor = Predictor(tiny_model_dir, device="cpu", batch_size=4)
    texts = ["short", "a much longer text about the market and the company results today", "steady", "bad day"]
    ids, probs, embeddings = predictor.predict_and_embed(texts)
    assert embeddings.shape == (4, predictor.model.config.hidden_size) and np.isfinite(embeddings).all()
    plain_ids, plain_probs = predictor.predict(texts)
    assert (ids == plain_ids).all() and np.allclose(probs, plain_probs, atol=1e-5)
    # Alone (no padding) or batched with a long text (padded), a text gets the same embedding.
    alone = predictor.predict_and_embed(["short"])[2]
    assert np.allclose(alone[0], embeddings[0], atol=1e-4)
    reordered = predictor.predict_and_embed(list(reversed(texts)))[2]
    assert np.allclose(reordered[::-1], embeddings, atol=1e-4)
    assert not np.allclose(embeddings[0], embeddings[1], atol=1e-3)
