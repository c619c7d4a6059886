"""The core: config, data, scenarios, federation, models, trainer, the run loop, results."""
