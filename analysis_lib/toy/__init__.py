"""The toy experiments' orchestration: what determines a toy model (setup, recipe), the one place that builds and caches
them (pipeline), and what every toy chapter runs with them (toy_runs, layer probes, compositional sets)."""
