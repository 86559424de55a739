"""The HTML trace explorer behind `reflstm.report` (see `reflstm.explorer.document`)."""
