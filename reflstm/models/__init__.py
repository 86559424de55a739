"""Whole models: the layers around recurrent layers, the mask operations of functional graphs, and
Model, which runs them layer by layer."""
