"""Configuration: one YAML per analysis, validated before anything runs."""
from tracerflow.config.load import Config, SampleFile, default_config_path, load_config, resolve_config
from tracerflow.config.spec import ConfigError

__all__ = ["Config", "ConfigError", "SampleFile", "default_config_path", "load_config", "resolve_config"]
