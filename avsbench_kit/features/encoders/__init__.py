"""One module per frozen encoder adapter; registered lazily in :data:`avsbench_kit.features.base.ENCODERS`."""
