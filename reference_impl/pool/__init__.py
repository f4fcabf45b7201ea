"""Pool manager: pools from config, their replicas and adapters, preload, drain and reload."""
