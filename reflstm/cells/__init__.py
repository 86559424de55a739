"""The recurrent layers themselves: each cell's equations, the loop over time they share, traces
and the backward pass. A new cell is a module here beside lstm.py, gru.py and simple_rnn.py."""
