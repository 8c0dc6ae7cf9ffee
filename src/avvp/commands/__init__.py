"""One module per ``avvp`` verb (see ``avvp.cli``)."""
