"""Full scale: the registry of real models (hub or local folders), resumable score logs, data-parallel sharding, the
paper's other benchmarks, chapter 1's full-scale run and the layer probes of real encoders."""
