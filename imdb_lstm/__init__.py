"""Code the pipeline's stages share: params, data, model, backend set-up, tlx fixes."""
