"""Numbers from scores: the benchmarks' metrics as their authors define them, statistics over seeds and the verdict
rule. Imports ``core`` at most."""
