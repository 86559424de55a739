"""Other frameworks' forms of the same layers, one module each: a live Keras layer (keras.py),
PyTorch (pytorch.py), ONNX (onnx.py), older Keras layouts (legacy.py), gate orders (layouts.py)."""
