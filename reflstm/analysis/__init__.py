"""Questions about a layer: one step's arithmetic (explain), which extraction mistake explains
an output (diagnosis), and what the network learned (attribution)."""
