"""The HTML trace explorer behind `reflstm.report` (document.py), and its exports: figure.py (one
panel as PNG or SVG) and lstmvis.py (LSTMVis's project files)."""
