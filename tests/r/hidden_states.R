# The README's "From R" recipe, run by tests/test_r.py: the hidden output of a saved Keras
# model's LSTM at every step, from R through reticulate, compared with what Keras returned.
#
#   RETICULATE_PYTHON=/path/to/venv/bin/python Rscript hidden_states.R MODEL X.txt KERAS_H.npy KERAS_C.npy
#
# X.txt holds the input's numbers in row-major (C) order, as Python's x.ravel() lists them.
args <- commandArgs(trailingOnly = TRUE)
model_path <- args[1]; x_path <- args[2]; keras_h_path <- args[3]; keras_c_path <- args[4]

library(reticulate)
reflstm <- import("reflstm")
np <- import("numpy")

m <- reflstm$load(model_path)
shape <- m$graph$input_shapes[[1]]                # (None, timesteps, features)
n_steps <- shape[[2]]; n_features <- shape[[3]]
flat <- scan(x_path, quiet = TRUE)
n_samples <- length(flat) / (n_steps * n_features)
x <- array_reshape(flat, c(n_samples, n_steps, n_features))   # row-major, as NumPy reads it

tr <- m$trace(x)                                   # a named list: one trace per LSTM layer
h <- tr$lstm$h                                     # samples x steps x units: h at every step
c_state <- tr$lstm$c                               # the cell state at every step
cat(sprintf("reflstm %s, numpy %s\n", reflstm$`__version__`, np$`__version__`))
cat(sprintf("dim(h) = %s\n", paste(dim(h), collapse = " x ")))

keras_h <- np$load(keras_h_path)                   # Keras's LSTM output, return_sequences=TRUE
keras_c <- np$load(keras_c_path)                   # Keras's final cell state, return_state=TRUE
cat(sprintf("max |h - Keras| over every step: %.3g\n", max(abs(h - keras_h))))
cat(sprintf("max |c at the last step - Keras's final c|: %.3g\n",
            max(abs(c_state[, n_steps, ] - keras_c))))

# Steps are 1-based in R: h[, 3, ] is Python's h[:, 2]. drop = FALSE keeps the three axes.
cat(sprintf("h[1, 3, ] is a plain vector of %d units; h[1, 3, , drop = FALSE] keeps dim %s\n",
            length(h[1, 3, ]), paste(dim(h[1, 3, , drop = FALSE]), collapse = " x ")))
cat("h of sample 1 at step 3:", formatC(h[1, 3, ], digits = 6, format = "f"), "\n")
cat("Keras, same step:       ", formatC(keras_h[1, 3, ], digits = 6, format = "f"), "\n")

# array() fills column-major: the same numbers become a different input.
wrong <- m$trace(array(flat, dim = c(n_samples, n_steps, n_features)))$lstm$h
cat(sprintf("array() instead of array_reshape(): max |h - Keras| = %.3g (a different input)\n",
            max(abs(wrong - keras_h))))
