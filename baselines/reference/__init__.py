"""Reference predictors: the anchors every trained baseline must beat on every protocol."""
