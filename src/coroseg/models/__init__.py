"""Networks (MONAI U-Nets keyed by name), run configs and the run folder (weights, config, reload)."""

from coroseg.models.config import LocatorConfig, RunConfig
from coroseg.models.registry import MODEL_NAMES, build_network, model_spec, network_config
from coroseg.models.run import LoadedRun, load_run, load_weights, save_weights

__all__ = ["MODEL_NAMES", "build_network", "model_spec", "network_config", "LoadedRun", "load_run", "load_weights",
           "save_weights", "RunConfig", "LocatorConfig"]
