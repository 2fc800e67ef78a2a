"""Official on-disk layouts -> validated, fingerprinted manifests -> loaders and shards."""
