"""The tools layer: the `microref` command line and the debugging tools it offers (compare,
explain, trace, vectors), on top of the public Interpreter and its plan."""
