"""Saved files: reading .keras, .h5 and weights-only files without Keras (files.py), their
configs (config.py, Keras 1's in keras1.py), and the checked reading of untrusted bytes."""
