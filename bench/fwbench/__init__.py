"""The benchmark suite behind ``bench/run`` (see its ``--help``)."""
